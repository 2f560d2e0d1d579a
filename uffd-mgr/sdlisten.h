/* sdlisten: the listening socket systemd hands a socket-activated uffd-mgrd (the protocol of
 * sd_listen_fds(3), without libsystemd): LISTEN_PID is our pid, LISTEN_FDS the number of
 * sockets, the first of them fd 3. systemd keeps the socket across the daemon's restarts, so
 * QEMUs that connect while it is down wait in the backlog instead of finding no one. */
#ifndef UFFD_SDLISTEN_H
#define UFFD_SDLISTEN_H

#include <stddef.h>

#define SDLISTEN_FD 3

/* Takes the socket systemd passed, after checking it is what uffd-mgrd serves: one
 * listening AF_UNIX SOCK_SEQPACKET socket bound to path (the unit's ListenSequentialPacket=
 * and the daemon's --socket must agree). Unsets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES so
 * that no child takes it for its own, and makes it close-on-exec and non-blocking. Returns
 * the fd; -ENOENT when systemd passed nothing to this process; another -errno with a
 * one-line reason in err otherwise. */
int sdlisten_take(const char *path, char *err, size_t errlen);

#endif

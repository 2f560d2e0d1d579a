# daemon_kill.sh with a compressed shm tier: the fake guest's pages are of mixed
# compressibility (incompressible, zero, compressible), stored as blobs, and uffd-mgrd is killed
# with SIGKILL 10 times (KILLS=N for more) and upgraded once while runs are stored, brought
# back, demoted and discarded: each new daemon must find every page from the entries (a blob's
# grains, length, index and algorithm) and the fake guest checks every byte. Once with zstd and
# 64K runs, once with lz4 and 4K runs (a blob per page). The tracker runs, as by default, so
# kills also land while an arming is in flight.
set -eu
here=$(dirname "$0")
KILLS=${KILLS:-10} COMPRESS=zstd RUN_SIZE=64K bash "$here/daemon_kill.sh"
KILLS=${KILLS:-10} COMPRESS=lz4 RUN_SIZE=4K bash "$here/daemon_kill.sh"

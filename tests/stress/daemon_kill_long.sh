# Long daemon-crash stress (make stress): the fake guest of tests/system/daemon_kill.sh through
# 300 SIGKILLs of uffd-mgrd at random moments and one upgrade; every byte verified. About 10
# minutes here.
KILLS=300 exec bash "$(dirname "$0")/../system/daemon_kill.sh"

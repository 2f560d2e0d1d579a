# Long fake-guest stress (make stress): several policies (run sizes 4K..2M, resident limits
# from 2% to 50% of the guest) each for a minute with 8 threads; every byte verified.
. "$(dirname "$0")/../system/lib.bash"
start_daemon
i=0
for spec in "4K 4M" "16K 16M" "64K 2M" "256K 64M" "2M 32M"; do
	set -- $spec
	i=$((i + 1))
	printf '[memory]\nresident_max = %s\nrun_size = %s\n[shm]\nmax = 512M\n' "$2" "$1" >"$T/p$i.conf"
	fakeguest "long$i" "$T/p$i.conf" --mb 128 --threads 8 --seconds 60 --write-pct 30 \
		--hot-pct 70 --seed $i || fail "run_size $1 resident_max $2: wrong bytes"
	echo "run_size $1 resident_max $2: $(stat long$i evictions.pages) pages evicted," \
		"$(stat long$i faults.shm) shm faults, $(stat long$i faults.wp) wp faults"
done

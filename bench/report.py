#!/usr/bin/env python3
"""report.py: the bench suite's bookkeeping, called by bench/run.sh.

  report.py stat SOCKET VM PATH     one number from uffd-mgrd's stats JSON (PATH: a.b.c)
  report.py holes FILE              bytes of data from offset 0 up to the first hole
  report.py fio FIO_JSON            "iops p50_us p99_us" of the first job's reads
  report.py corpus OUT MIB PATH...  guest-like memory for the compressed shm tier: the files
                                    under the PATHs in order (directories sorted, walked), each
                                    padded to a page as the page cache holds it, all-zero pages
                                    dropped, up to MIB MiB; prints what went in
  report.py table RESULTS_DIR       rows.tsv + meta.txt -> table on stdout, bench.json,
                                    latest.md and the gnuplot data files (*.dat)

rows.tsv: one measurement per line, tab-separated:
  scene, measurement, value, unit, then pairs of (baseline name, baseline value).
A value that is not a number (e.g. "n/a (tracker not built yet)") is printed as it is and has
no ratio. ratio = value / baseline, so for times above 1 is slower than the baseline and for
rates (MiB/s, IOPS) below 1 is slower. meta.txt: key=value lines (date, machine, notes).
plots.tsv: plot, label, columns... lines that become <plot>.dat for bench/plots.gp.
"""
import json
import os
import subprocess
import sys


def num(s):
    """Returns s as a float, or None when it is not a number."""
    try:
        return float(s)
    except ValueError:
        return None


def fmt(x):
    """3 significant digits, never an exponent."""
    if x is None:
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    return f"{x:.3g}"


def stat(sock, vm, path):
    out = subprocess.run([os.environ.get("UFFDCTL", "uffdctl"), "--socket", sock, "stats",
                          "--json"], capture_output=True, text=True, check=True).stdout
    snap = json.loads(out.strip().splitlines()[-1])
    v = [x for x in snap["vms"] if x["name"] == vm][-1]
    for k in path.split("."):
        v = v[k]
    print(v)


def holes(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        print(os.lseek(fd, 0, os.SEEK_HOLE))
    finally:
        os.close(fd)


def fio(path):
    with open(path) as f:
        text = f.read()
    # fio may print notes before its JSON.
    job = json.loads(text[text.index("{"):])["jobs"][0]["read"]
    pct = job["clat_ns"]["percentile"]
    print(f"{job['iops']:.0f} {pct['50.000000'] / 1e3:.2f} {pct['99.000000'] / 1e3:.2f}")


def corpus_files(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    f = os.path.join(root, f)
                    if os.path.isfile(f) and not os.path.islink(f):  # busybox's applets once
                        yield f
        elif os.path.isfile(p):
            yield p


def corpus(out, mib, paths):
    """Pages of real files, as a guest holds them in its page cache (or in memory, for its
    kernel and binaries): text (System.map, config, scripts), ELF binaries (busybox, memstress)
    and kernel modules, and the already compressed kernel image and initramfs."""
    want, pages, files, zero = int(mib) << 20, 0, 0, bytes(4096)
    with open(out, "wb") as o:
        for f in corpus_files(paths):
            with open(f, "rb") as src:
                data = src.read()
            data += bytes(-len(data) % 4096)
            files += 1
            for i in range(0, len(data), 4096):
                page = data[i:i + 4096]
                if page != zero and pages * 4096 < want:
                    o.write(page)
                    pages += 1
            if pages * 4096 >= want:
                break
    print(f"{pages * 4096} bytes from {files} files")


def read_rows(path):
    rows = []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 4:
                continue
            row = {"scene": int(p[0]), "measurement": p[1], "unit": p[3]}
            v = num(p[2])
            row["value"] = v if v is not None else p[2]
            row["baselines"] = []
            for name, bv in zip(p[4::2], p[5::2]):
                b = {"name": name, "value": num(bv)}
                b["ratio"] = (v / b["value"]) if v is not None and b["value"] else None
                row["baselines"].append(b)
            rows.append(row)
    return sorted(rows, key=lambda r: r["scene"])  # stable: a scene keeps its order


def read_meta(path):
    meta = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                if k:
                    meta[k] = v
    return meta


def cells(row):
    """The table's cells for one row: scene, measurement, value, baseline, ratio."""
    v = row["value"]
    val = f"{fmt(v)} {row['unit']}" if isinstance(v, float) else v
    base = "; ".join(f"{b['name']} {fmt(b['value'])} {row['unit']}" for b in row["baselines"])
    ratio = "; ".join(f"{fmt(b['ratio'])}x" if b["ratio"] is not None else "n/a"
                      for b in row["baselines"])
    return [str(row["scene"]), row["measurement"], val, base or "-", ratio or "-"]


HEAD = ["scene", "measurement", "value", "baseline", "ratio"]


def text_table(rows):
    data = [HEAD] + [cells(r) for r in rows]
    w = [max(len(r[i]) for r in data) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in data]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def md_table(rows):
    esc = lambda s: s.replace("|", "\\|")
    out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    out += ["| " + " | ".join(esc(c) for c in cells(r)) + " |" for r in rows]
    return "\n".join(out)


def write_plots(d):
    """plots.tsv -> one <plot>.dat per plot: quoted label, then the numbers."""
    src = os.path.join(d, "plots.tsv")
    if not os.path.exists(src):
        return
    files = {}
    with open(src) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 3:
                continue
            vals = [x if num(x) is not None else "NaN" for x in p[2:]]
            files.setdefault(p[0], []).append(f'"{p[1]}" ' + " ".join(vals))
    for name, lines in files.items():
        with open(os.path.join(d, name + ".dat"), "w") as f:
            f.write("\n".join(lines) + "\n")


def table(d):
    rows = read_rows(os.path.join(d, "rows.tsv"))
    meta = read_meta(os.path.join(d, "meta.txt"))
    with open(os.path.join(d, "bench.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
        f.write("\n")
    write_plots(d)
    print(text_table(rows))
    with open(os.path.join(d, "latest.md"), "w") as f:
        f.write(f"# uffd-mgr bench: latest results\n\n")
        f.write(f"Measured {meta.get('date', '?')} by `make bench` in {meta.get('duration', '?')}"
                f" on {meta.get('machine', '?')}.\n\n")
        for k in sorted(meta):
            if k.startswith("note"):
                f.write(f"- {meta[k]}\n")
        f.write("\nratio = value / baseline, both measured in the same run: for latencies "
                "above 1 is slower than the baseline, for rates (MiB/s, IOPS) below 1 is "
                "slower.\n\n")
        f.write(md_table(rows) + "\n\n![fault latency and regrowth](latest.png)\n")


def main(argv):
    if len(argv) == 5 and argv[1] == "stat":
        stat(argv[2], argv[3], argv[4])
    elif len(argv) == 3 and argv[1] == "holes":
        holes(argv[2])
    elif len(argv) == 3 and argv[1] == "fio":
        fio(argv[2])
    elif len(argv) >= 5 and argv[1] == "corpus":
        corpus(argv[2], argv[3], argv[4:])
    elif len(argv) == 3 and argv[1] == "table":
        table(argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

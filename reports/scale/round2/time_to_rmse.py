"""Time to LIBMF's held-out RMSE per lsqmf system, from bench_scale.py --curve runs.csv."""
import csv
import json
import statistics as st
import sys

rows = list(csv.DictReader(open(sys.argv[1])))
for size in sorted({int(r["size"]) for r in rows}):
    R = [r for r in rows if int(r["size"]) == size]
    lib = {int(r["repeat"]): r for r in R if r["system"] == "libmf"}
    target = st.median(float(r["rmse"]) for r in lib.values())
    lib_fit = st.median(float(r["fit_s"]) for r in lib.values())
    print(f"size {size}: LIBMF rmse {target:.4f} fit median {lib_fit:.2f}")
    systems = sorted({r["system"] for r in R})
    for s in systems:
        cells = [r for r in R if r["system"] == s]
        fit = [float(r["fit_s"]) for r in cells]
        ratio = [
            float(r["fit_s"]) / float(lib[int(r["repeat"])]["fit_s"])
            for r in cells
            if int(r["repeat"]) in lib
        ]
        ttr = []
        for r in cells:
            if r.get("curve"):
                c = json.loads(r["curve"])
                hit = [t for t, e in c if e <= target]
                if hit and int(r["repeat"]) in lib:
                    ttr.append(hit[0] / float(lib[int(r["repeat"])]["fit_s"]))
        rmse = st.median(float(r["rmse"]) for r in cells)
        line = (f"  {s:16s} fit {st.median(fit):7.2f} ({min(fit):.2f}-{max(fit):.2f}) "
                f"rmse {rmse:.4f} fit/LIBMF {st.median(ratio):.2f} "
                f"({min(ratio):.2f}-{max(ratio):.2f})")
        if ttr:
            line += (f"  time-to-LIBMF-RMSE / LIBMF fit {st.median(ttr):.2f} "
                     f"({min(ttr):.2f}-{max(ttr):.2f}) n={len(ttr)}")
        print(line)
    for s in systems:
        if s.startswith("after:"):
            b = "before:" + s[6:]
            bt = {int(r["repeat"]): float(r["fit_s"]) for r in R if r["system"] == b}
            sp = [
                bt[int(r["repeat"])] / float(r["fit_s"])
                for r in R
                if r["system"] == s and int(r["repeat"]) in bt
            ]
            if sp:
                spread = f"({min(sp):.2f}-{max(sp):.2f})"
                print(f"  speed-up {s[6:]}: {st.median(sp):.2f} {spread} n={len(sp)}")

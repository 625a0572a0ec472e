#!/usr/bin/env python3
"""Valid ranges of the tabular samples' features, from their training rows, for the manifests' feature schemas.

The training rows are the data sets scikit-learn ships (Debian python3-sklearn: diabetes_data_raw.csv.gz,
breast_cancer.csv) less the held-out rows in ../shared/data/tabular (train_tabular.py's split, matched row by row).
Each range is the training min..max widened by a quarter of each bound (min x 0.75, max x 1.25 for positive values),
rounded outwards to 3 significant digits. (A margin of 10% of the span was tried first: 3 of the 143 held-out breast
cancer rows fell outside it, e.g. a worst area of 4254 against a training maximum of 3432.) Writes samples/feature_ranges.json, which
build_samples.py reads. Standard library only:
  apt-get download python3-sklearn && dpkg -x python3-sklearn_*.deb sk
  python3 samples/feature_ranges.py sk/usr/lib/python3/dist-packages/sklearn/datasets/data
"""
import csv, gzip, json, math, os, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKLEARN = sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/python3/dist-packages/sklearn/datasets/data"
TABULAR = os.path.join(ROOT, "..", "shared", "data", "tabular") if len(sys.argv) < 3 else sys.argv[2]

def key(row):
    return tuple(float("%.6g" % float(v)) for v in row)

def training(full, held_out):
    left = {}
    for row in held_out:
        left[key(row)] = left.get(key(row), 0) + 1
    rows = []
    for row in full:
        k = key(row)
        if left.get(k, 0) > 0:
            left[k] -= 1
        else:
            rows.append([float(v) for v in row])
    assert sum(left.values()) == 0, "a held-out row is not in the full data set"
    return rows

def outward(x, up):
    if x == 0:
        return 0.0
    step = 10 ** (math.floor(math.log10(abs(x))) - 2)
    return float("%.6g" % ((math.ceil if up else math.floor)(x / step) * step))

def ranges(rows, names):
    out = {}
    for j, name in enumerate(names):
        col = [r[j] for r in rows]
        lo, hi = min(col), max(col)
        low = lo * 0.75 if lo >= 0 else lo * 1.25
        high = hi * 1.25 if hi >= 0 else hi * 0.75
        out[name] = {"min": outward(low, False), "max": outward(high, True), "training_min": lo, "training_max": hi}
    return out

diabetes_names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
diabetes = [l.split() for l in gzip.open(os.path.join(SKLEARN, "diabetes_data_raw.csv.gz"), "rt") if l.strip()]
diabetes_test = [r[:10] for r in list(csv.reader(open(os.path.join(TABULAR, "diabetes_test.csv"))))[1:]]
d_train = training(diabetes, diabetes_test)

bc = [r[:30] for r in list(csv.reader(open(os.path.join(SKLEARN, "breast_cancer.csv"))))[1:]]
bc_test = list(csv.reader(open(os.path.join(TABULAR, "breast_cancer_test.csv"))))
bc_names = bc_test[0][:30]
b_train = training(bc, [r[:30] for r in bc_test[1:]])

result = {"diabetes": {"n_train": len(d_train), "features": ranges(d_train, diabetes_names)},
          "breast_cancer": {"n_train": len(b_train), "features": ranges(b_train, bc_names)}}
with open(os.path.join(ROOT, "samples", "feature_ranges.json"), "w") as f:
    json.dump(result, f, indent=1)
    f.write("\n")
print("training rows: diabetes", len(d_train), "breast cancer", len(b_train))

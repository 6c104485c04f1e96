#!/usr/bin/env bash
# Compare histoscreen-edge (tract) inference latency with ONNX Runtime on the
# same ONNX file, the same preprocessed input and the same machine, at 1 and 2
# threads. Last line of output: `ratio_1t=R1 ratio_2t=R2`: edge over ORT, the median
# of the per-round ratios over ROUNDS alternating rounds (default 5).
#
#   scripts/bench-vs-ort.sh MODEL.onnx [ITERATIONS] [ROUNDS] [FIELD]
#
# HISTOSCREEN_BENCH_CONVS (e.g. "tract winograd auto") times the edge once per --conv path in
# every round, each against the same ORT run; the ratio line then names each path
# (`ratio_1t_tract=R ...`), the first path's ratios also as plain `ratio_1t`/`ratio_2t`.
#
# FIELD (e.g. 1280x720) times the whole-field dense pass instead of one tile: the edge
# writes the dense ONNX graph it derives from MODEL (input [1,3,H,W], output one softmax
# row per tile) and the frame's tensor, and both runtimes run that file on that tensor.
#   scripts/bench-vs-ort.sh --make-alexnet OUT.onnx    # synthetic AlexNet + card
#
# MODEL.onnx needs its model card (MODEL.json) beside it, as exported by the
# trainer. --make-alexnet builds a torchvision-shaped AlexNet (classic head
# 9216-4096-4096-2) with the shared ImageNet conv weights and a random head, for
# benchmarking before a trained model exists.
#
# The Python venv (onnxruntime, numpy, onnx) lives in target/bench-venv so it is
# reused between runs and never committed. HISTOSCREEN_SHARED selects the data.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${HISTOSCREEN_SHARED:-$ROOT/../shared}"
VENV="${HISTOSCREEN_BENCH_VENV:-$ROOT/target/bench-venv}"
PY="$VENV/bin/python"

need_venv() {
    if [ ! -x "$PY" ]; then
        python3 -m venv "$VENV"
    fi
    if ! "$PY" -c "import onnxruntime, numpy, $1" 2>/dev/null; then
        "$VENV/bin/pip" install --quiet onnxruntime numpy "$1"
    fi
}

if [ "${1:-}" = "--make-alexnet" ]; then
    OUT="${2:?usage: $0 --make-alexnet OUT.onnx}"
    need_venv onnx
    "$PY" - "$OUT" "$SHARED/weights/alexnet-features-imagenet.safetensors" <<'PYEOF'
import hashlib, json, os, struct, sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out, weights = sys.argv[1], sys.argv[2]

def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        tensors[k] = np.frombuffer(data[a:b], dtype=np.float32).reshape(v["shape"]).copy()
    return tensors

feats = read_safetensors(weights) if os.path.exists(weights) else {}
rng = np.random.default_rng(0)
inits, nodes = [], []

def param(name, shape, scale):
    arr = feats.get(name)
    if arr is None:
        arr = (rng.standard_normal(shape) * scale).astype(np.float32)
    assert list(arr.shape) == list(shape), (name, arr.shape, shape)
    inits.append(numpy_helper.from_array(arr, name))
    return name

x = "image"
convs = [  # torchvision alexnet.features: (index, out, in, k, stride, pad, pool_after)
    (0, 64, 3, 11, 4, 2, True), (3, 192, 64, 5, 1, 2, True), (6, 384, 192, 3, 1, 1, False),
    (8, 256, 384, 3, 1, 1, False), (10, 256, 256, 3, 1, 1, True),
]
for i, co, ci, k, s, p, pool in convs:
    w = param(f"features.{i}.weight", [co, ci, k, k], 0.01)
    b = param(f"features.{i}.bias", [co], 0.01)
    nodes.append(helper.make_node("Conv", [x, w, b], [f"conv{i}"], kernel_shape=[k, k],
                                  strides=[s, s], pads=[p, p, p, p]))
    nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]))
    x = f"relu{i}"
    if pool:
        nodes.append(helper.make_node("MaxPool", [x], [f"pool{i}"], kernel_shape=[3, 3], strides=[2, 2]))
        x = f"pool{i}"
nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
x = "flat"
for j, (fi, fo) in enumerate([(9216, 4096), (4096, 4096), (4096, 2)]):
    w = param(f"classifier.{j}.weight", [fo, fi], 1.0 / np.sqrt(fi))
    b = param(f"classifier.{j}.bias", [fo], 0.01)
    nodes.append(helper.make_node("Gemm", [x, w, b], [f"fc{j}"], transB=1))
    x = f"fc{j}"
    if j < 2:
        nodes.append(helper.make_node("Relu", [x], [f"fcrelu{j}"]))
        x = f"fcrelu{j}"
nodes.append(helper.make_node("Softmax", [x], ["probs"], axis=1))
graph = helper.make_graph(
    nodes, "alexnet-synthetic",
    [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 224, 224])],
    [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 2])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="bench-vs-ort")
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, out)
raw = open(out, "rb").read()
card = {
    "format_version": 1, "name": "alexnet-synthetic", "architecture": "alexnet", "head": "classic",
    "precision": "f32", "onnx_file": os.path.basename(out), "sha256": hashlib.sha256(raw).hexdigest(),
    "size_bytes": len(raw), "classes": ["benign", "malignant"],
    "input": {"name": "image", "shape": [1, 3, 224, 224], "layout": "NCHW", "resize_shorter_side": 224,
              "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "output": {"name": "probs", "shape": [1, 2]}, "threshold": 0.5, "uncertain_band": 0.1,
    "split_seed": None, "training": {"note": "synthetic: ImageNet features, random head"}, "metrics": {},
}
with open(os.path.splitext(out)[0] + ".json", "w") as f:
    json.dump(card, f, indent=2)
print(f"wrote {out} ({len(raw) / 1e6:.1f} MB) and its card")
PYEOF
    exit 0
fi

MODEL="$(realpath "${1:?usage: $0 MODEL.onnx [ITERATIONS] [ROUNDS]}")"
N="${2:-50}"
ROUNDS="${3:-5}"
FIELD="${4:-}"
WARMUP=5
need_venv numpy

# HISTOSCREEN_BENCH_PROFILE=dev reuses a debug build on machines where a release
# build is slow (tract-core is then at opt-level 0: the figures are not comparable).
PROFILE="${HISTOSCREEN_BENCH_PROFILE:-release}"
(cd "$ROOT" && cargo build --profile "$PROFILE" -p histoscreen-edge --bin histoscreen-edge --quiet)
if [ "$PROFILE" = dev ]; then EDGE="$ROOT/target/debug/histoscreen-edge"; else EDGE="$ROOT/target/$PROFILE/histoscreen-edge"; fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The edge preprocesses the shared BreakHis image and saves the exact tensor it
# feeds tract, so ORT runs on identical input.
if [ -n "$FIELD" ]; then
    "$EDGE" bench --model "$MODEL" --iterations 1 --warmup 0 --field "$FIELD" --dense-only \
        --save-dense "$WORK/dense.onnx" --save-input "$WORK/input.f32" > /dev/null
    ORT_MODEL="$WORK/dense.onnx"
else
    "$EDGE" bench --model "$MODEL" --iterations 1 --warmup 0 --save-input "$WORK/input.f32" > /dev/null
    ORT_MODEL="$MODEL"
fi

# A shared machine's speed drifts by tens of percent within a minute, so the two
# runtimes alternate: ROUNDS rounds, each timing N runs of one and then N of the
# other (the order flips every round), and the ratio reported is the median of
# the rounds' ratios, with their spread.
"$PY" - "$MODEL" "$WORK" "$N" "$WARMUP" "$ROUNDS" "$EDGE" "$ORT_MODEL" "$FIELD" "${HISTOSCREEN_BENCH_CONVS:-}" <<'PYEOF'
import json, statistics, subprocess, sys, time
import numpy as np
import onnxruntime as ort

model, work, n, warmup, rounds, edge_bin = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
ort_model, field = sys.argv[7], sys.argv[8]
convs = sys.argv[9].split() or [None]
w, h = (int(v) for v in field.split("x")) if field else (224, 224)
x = np.fromfile(f"{work}/input.f32", dtype="<f4").reshape(1, 3, h, w)

sessions = {}
for t in (1, 2):
    so = ort.SessionOptions()
    so.intra_op_num_threads = t
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sessions[t] = ort.InferenceSession(ort_model, so, providers=["CPUExecutionProvider"])

def time_ort(t):
    sess = sessions[t]
    name = sess.get_inputs()[0].name
    for _ in range(warmup):
        probs = sess.run(None, {name: x})[0]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        probs = sess.run(None, {name: x})[0]
        times.append((time.perf_counter() - t0) * 1e3)
    # A dense file answers one row per tile: compare the tiles' mean.
    return statistics.median(times), float(np.mean(probs[:, 1]))

def time_edge(t, conv):
    out = f"{work}/edge-{t}.json"
    extra = ["--field", field, "--dense-only"] if field else []
    extra += ["--conv", conv] if conv else []
    subprocess.run([edge_bin, "bench", "--model", model, "--threads", str(t), "--iterations", str(n),
                    "--warmup", str(warmup), "--json", out] + extra, check=True, stdout=subprocess.DEVNULL)
    e = json.load(open(out))
    if field:
        f = e["field"][0]
        return f["dense_ms"]["p50"], e["preprocess_ms"]["p50"], f["p_mean"]
    return e["infer_ms"]["p50"], e["preprocess_ms"]["p50"], e["p_malignant"]

per = {(t, c): [] for t in (1, 2) for c in convs}
for r in range(rounds):
    for t in (1, 2):
        # ORT first in even rounds, last in odd ones; the edge's paths in between, in turn.
        order = convs if r % 2 == 0 else convs[::-1]
        if r % 2 == 0:
            o, po = time_ort(t)
        edge = {c: time_edge(t, c) for c in order}
        if r % 2 == 1:
            o, po = time_ort(t)
        for c in convs:
            e, pre, pe = edge[c]
            per[(t, c)].append((o, e, pre, po, pe))

print(f"model {model}" + (f" (dense pass, {field} frame)" if field else ""))
print(f"onnxruntime {ort.__version__}; {rounds} rounds alternating the runtimes, each the median of {n} runs after {warmup} warmup")
print(f"{'threads':>7}  {'conv':>8}  {'ort_ms':>8}  {'edge_ms':>8}  {'ratio':>6}  {'ratio range':>13}  {'edge_pre_ms':>11}  {'p_mal ort':>9}  {'p_mal edge':>10}")
ratios = {}
for t in (1, 2):
    for c in convs:
        rows = per[(t, c)]
        rs = sorted(e / o for o, e, *_ in rows)
        ratios[(t, c)] = statistics.median(rs)
        med = lambda i: statistics.median(row[i] for row in rows)
        print(f"{t:>7}  {c or 'default':>8}  {med(0):>8.3f}  {med(1):>8.3f}  {ratios[(t, c)]:>6.3f}  {rs[0]:>6.3f}-{rs[-1]:<6.3f}  {med(2):>11.3f}  {rows[-1][3]:>9.5f}  {rows[-1][4]:>10.5f}")
line = f"ratio_1t={ratios[(1, convs[0])]:.3f} ratio_2t={ratios[(2, convs[0])]:.3f}"
if convs != [None]:
    line += "".join(f" ratio_{t}t_{c}={ratios[(t, c)]:.3f}" for c in convs for t in (1, 2))
print(line)
PYEOF

#!/usr/bin/env bash
# Cross-compile histoscreen-edge for 64-bit ARM (Raspberry Pi OS bookworm, Jetson JetPack 6)
# natively on Debian bookworm, without Docker, and check the result under qemu-user:
#
#   1. apt       Debian's Rust (rustc-web 1.96) with its aarch64 std, the aarch64 C toolchain,
#                qemu-user-static and libclang (v4l's bindgen); skipped when already there
#   2. build     only the edge, for aarch64, in its own target dir (never the main one)
#   3. elf       the binary is AArch64 and needs no glibc newer than 2.35 (JetPack 6)
#   4. unit      the edge's unit tests for aarch64, run through qemu
#   5. parity    `classify` of the bundled samples with every bundled variant of the default model
#                (f32, int8, int8-weights), on x86 and on aarch64 under qemu as a Cortex-A72
#                (Pi 4: plain NEON) and a Cortex-A76 (Pi 5: NEON + fp16 + dotprod); every
#                p_malignant must agree with x86 within 1e-4
#
# The last line printed is `max_abs_diff=X` (over both CPUs and all images); the exit status is
# non-zero when any stage fails or X exceeds the tolerance.
#
# Knobs (environment):
#   HS_CROSS_PROFILE   cargo profile for the aarch64 binary: dev (default: shares its
#                      dependencies with the unit-test build, same kernels and numerics) or release
#   HS_CROSS_TARGET_DIR  default target/aarch64-build
#   HS_CARGO_ARGS      extra arguments for the aarch64 cargo commands, e.g.
#                      "--config profile.dev.package.tract-core.opt-level=3": faster qemu runs
#                      (f32 1.2x, int8 about 4x), same results, and tract-core's codegen goes from 3 to
#                      17 minutes on 2 cores (the workspace keeps it at 0 in dev builds)
#   HS_CARGO, HS_RUSTC  another toolchain with an aarch64 std (e.g. rustup's after `rustup
#                      target add aarch64-unknown-linux-gnu`: HS_CARGO=cargo HS_RUSTC=rustc
#                      HS_SKIP_APT=1, with the C toolchain and qemu installed)
#   HS_MODELS          ONNX files to compare, each with its .json card beside it (default: every
#                      models/histoscreen-alexnet-compact*.onnx: f32, int8, int8-weights)
#   HS_SAMPLES         default models/samples
#   HS_FIELD_SAMPLES   how many samples the f32 model also screens whole-field (default 2; 0: none)
#   HS_X86_BIN         x86 histoscreen-edge to compare with (default: `cargo build --workspace --bins`,
#                      almost a no-op after `cargo test --workspace`)
#   HS_QEMU_CPUS       default "cortex-a72 cortex-a76"
#   HS_UNIT_CPUS       CPUs the unit tests run under, default "cortex-a76" ("" skips them)
#   HS_PARITY_TOL      default 1e-4
#   HS_MAX_GLIBC       newest glibc symbol version allowed, default 2.35
#   HS_SKIP_APT=1      do not touch apt (tools installed some other way)
#   HS_NICE            niceness of the aarch64 cargo runs, default 10 (shared machines)
#   HISTOSCREEN_SHARED shared data for the unit tests, default ../shared
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

TRIPLE=aarch64-unknown-linux-gnu
PROFILE=${HS_CROSS_PROFILE:-dev}
XDIR=${HS_CROSS_TARGET_DIR:-$ROOT/target/aarch64-build}
# shellcheck disable=SC2206
MODELS=(${HS_MODELS:-models/histoscreen-alexnet-compact*.onnx})
SAMPLES=${HS_SAMPLES:-models/samples}
CPUS=${HS_QEMU_CPUS:-cortex-a72 cortex-a76}
UNIT_CPUS=${HS_UNIT_CPUS-cortex-a76}
TOL=${HS_PARITY_TOL:-1e-4}
MAX_GLIBC=${HS_MAX_GLIBC:-2.35}
export HISTOSCREEN_SHARED="${HISTOSCREEN_SHARED:-$(cd .. && pwd)/shared}"
export CARGO_TERM_COLOR=never
WORK=$XDIR/check
mkdir -p "$WORK"

case $PROFILE in
dev) PROFILE_DIR=debug ;;
*) PROFILE_DIR=$PROFILE ;;
esac
ABIN=$XDIR/$TRIPLE/$PROFILE_DIR/histoscreen-edge

t0=$SECONDS
stage() {
    local name=$1
    shift
    local s=$SECONDS
    echo "::: aarch64 $name"
    "$@"
    echo "::: aarch64 $name took $((SECONDS - s)) s (total $((SECONDS - t0)) s)"
}

die() {
    echo "cross-aarch64: $*" >&2
    exit 1
}

# --- 1. tools -------------------------------------------------------------------------------

# Debian's rustc-web ships an aarch64 std as a package (rustup's cannot be downloaded on CI).
PKGS=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    qemu-user-static libclang-dev)

installed() {
    dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root for: $* (or install ${PKGS[*]} and set HS_SKIP_APT=1)"
    fi
}

install_tools() {
    if [ "${HS_SKIP_APT:-0}" = 1 ]; then
        echo "HS_SKIP_APT=1: not touching apt"
        return
    fi
    local missing=() p
    for p in "${PKGS[@]}"; do
        installed "$p" || missing+=("$p")
    done
    # The aarch64 std must be the very version of the host compiler.
    if [ ${#missing[@]} = 0 ]; then
        local vh va
        vh=$(dpkg-query -W -f='${Version}' rustc-web)
        va=$(dpkg-query -W -f='${Version}' libstd-rust-web-dev:arm64)
        [ "$vh" = "$va" ] || missing+=("libstd-rust-web-dev:arm64=$vh")
    fi
    if [ ${#missing[@]} = 0 ]; then
        echo "already installed: ${PKGS[*]}"
        return
    fi
    echo "installing: ${missing[*]}"
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        as_root dpkg --add-architecture arm64
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    local vh va
    vh=$(dpkg-query -W -f='${Version}' rustc-web)
    va=$(dpkg-query -W -f='${Version}' libstd-rust-web-dev:arm64)
    if [ "$vh" != "$va" ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "libstd-rust-web-dev:arm64=$vh" >/dev/null
    fi
}

stage "install tools" install_tools
XCARGO=${HS_CARGO:-/usr/bin/cargo}
[ -d "$("${HS_RUSTC:-/usr/bin/rustc}" --print sysroot)/lib/rustlib/$TRIPLE/lib" ] ||
    die "${HS_RUSTC:-/usr/bin/rustc} has no $TRIPLE std (Debian: libstd-rust-web-dev:arm64)"
# qemu runs the binary against the arm64 glibc that multiarch put in /lib (no -L: with
# `-L /usr/aarch64-linux-gnu` creating a thread hangs).
[ -e /lib/ld-linux-aarch64.so.1 ] || die "no /lib/ld-linux-aarch64.so.1 (libc6:arm64)"
"${HS_RUSTC:-/usr/bin/rustc}" --version

# Debian's cargo and rustc, aarch64 linker and C compiler (tract-linalg assembles its kernels
# with it), qemu as the test runner. Only for the aarch64 commands: the x86 build stays as is.
XENV=(
    RUSTC="${HS_RUSTC:-/usr/bin/rustc}"
    CARGO_TARGET_DIR="$XDIR"
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
)
# Run from edge/ (cargo then builds that member only) rather than with `-p histoscreen-edge`,
# so that a `pkill -f histoscreen-edge` aimed at a running screen loop spares these builds.
# shellcheck disable=SC2206
XCONF=(${HS_CARGO_ARGS:-})
xcargo() {
    local cmd=$1
    shift
    (cd edge && nice -n "${HS_NICE:-10}" env "${XENV[@]}" "$XCARGO" "$cmd" "${XCONF[@]}" "$@")
}

# What tract must believe about each emulated CPU. qemu-user shows the host's /proc/cpuinfo, so
# tract finds neither the CPU part nor `asimdhp` there (it does read qemu's HWCAP for dotprod).
# Force what the real board reports: the Pi 4's Cortex-A72 is part 0xd08 (tract's A72 kind,
# NEON only); the Pi 5's Cortex-A76 is 0xd0b (generic kind) and has FEAT_FP16.
tract_env_for() {
    case $1 in
    cortex-a72) echo "TRACT_CPU_AARCH64_OVERRIDE_CPU_PART=0xd08" ;;
    cortex-a76) echo "TRACT_CPU_AARCH64_OVERRIDE_CPU_PART=0xd0b TRACT_CPU_ISA=+fp16" ;;
    cortex-a55) echo "TRACT_CPU_AARCH64_OVERRIDE_CPU_PART=0xd05" ;;
    cortex-a53) echo "TRACT_CPU_AARCH64_OVERRIDE_CPU_PART=0xd03" ;;
    *) echo "" ;;
    esac
}

# --- 2. build ---------------------------------------------------------------------------------

# One `cargo test --no-run` builds the binary and the unit tests with a single feature
# resolution: a separate `cargo build` would resolve without the dev-dependencies and compile
# the whole tract stack a second time. Cargo builds the binary for integration tests, so one
# small integration test is named; the others run on x86 only and would cost a link each.
build_edge() {
    xcargo test --no-run --target $TRIPLE --profile "$PROFILE" --lib --test fsutil
    # The trainer's framework must never reach the device build.
    if xcargo tree --target $TRIPLE -e normal,build --prefix none | grep -E '^burn'; then
        die "the edge's dependency tree for $TRIPLE contains burn"
    fi
}
stage "build ($PROFILE): binary and tests" build_edge

# --- 3. the binary ----------------------------------------------------------------------------

check_elf() {
    [ -x "$ABIN" ] || die "$ABIN was not built"
    local machine glibc
    machine=$(readelf -h "$ABIN" | awk -F: '/Machine:/ { gsub(/^[ \t]+/, "", $2); print $2 }')
    [ "$machine" = AArch64 ] || die "$ABIN is for '$machine', not AArch64"
    glibc=$(readelf -V -W "$ABIN" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
    echo "$ABIN: ELF $machine, $(du -h "$ABIN" | cut -f1), interpreter" \
        "$(readelf -l "$ABIN" | sed -n 's/.*interpreter: \(.*\)]/\1/p')"
    echo "needs: $(readelf -d "$ABIN" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
    echo "newest glibc symbol version: $glibc (allowed: $MAX_GLIBC)"
    [ "$(printf '%s\n%s\n' "$glibc" "$MAX_GLIBC" | sort -V | tail -1)" = "$MAX_GLIBC" ] ||
        die "the binary needs glibc $glibc, newer than $MAX_GLIBC (JetPack 6)"
}
stage "check ELF" check_elf

# --- 4. unit tests ----------------------------------------------------------------------------

unit_tests() {
    local cpu
    for cpu in $UNIT_CPUS; do
        echo "--- unit tests under qemu -cpu $cpu"
        # shellcheck disable=SC2046
        (cd edge && timeout 1200 nice -n "${HS_NICE:-10}" env "${XENV[@]}" QEMU_CPU="$cpu" \
            $(tract_env_for "$cpu") "$XCARGO" test "${XCONF[@]}" --target $TRIPLE --profile "$PROFILE" --lib)
    done
}
if [ -n "$UNIT_CPUS" ]; then
    stage "unit tests" unit_tests
fi

# --- 5. parity --------------------------------------------------------------------------------

for MODEL in "${MODELS[@]}"; do
    [ -f "$MODEL" ] || die "model $MODEL not found (set HS_MODELS=... to use others)"
    [ -f "${MODEL%.onnx}.json" ] || die "model card ${MODEL%.onnx}.json not found"
done
[ -d "$SAMPLES" ] || die "sample folder $SAMPLES not found (set HS_SAMPLES=...)"

x86_build() {
    if [ -n "${HS_X86_BIN:-}" ]; then
        X86_BIN=$HS_X86_BIN
    else
        # The whole workspace, as the tests build it: `-p` would resolve other features and
        # rebuild the tract stack.
        cargo build --workspace --bins
        X86_BIN=$ROOT/target/debug/histoscreen-edge
    fi
    [ -x "$X86_BIN" ] || die "no x86 binary at $X86_BIN"
}
stage "x86 build" x86_build

# One "path<TAB>p_malignant" line per image from `classify --format jsonl`; "-" for an error row.
jsonl_to_tsv() {
    awk '
    function field(line, key,   r, n) {
        n = length(key) + 3
        if (!match(line, "\"" key "\":(\"([^\"\\\\]|\\\\.)*\"|[^,}]*)")) return ""
        r = substr(line, RSTART + n, RLENGTH - n)
        gsub(/^"|"$/, "", r)
        return r
    }
    NF { p = field($0, "p_malignant"); if (p == "" || p == "null") p = "-"; print field($0, "path") "\t" p }'
}

classify_x86() {
    # shellcheck disable=SC2086
    "$X86_BIN" classify --model "$MODEL" --format jsonl --threads 1 $VIEW_ARGS $INPUTS >"$OUT/x86.jsonl"
    jsonl_to_tsv <"$OUT/x86.jsonl" >"$OUT/x86.tsv"
    echo "x86: $(wc -l <"$OUT/x86.tsv") image(s)"
}

classify_arm() {
    local cpu=$1 tenv
    tenv=$(tract_env_for "$cpu")
    echo "qemu -cpu $cpu, ${tenv:-no tract overrides}"
    # shellcheck disable=SC2086
    if ! env QEMU_CPU="$cpu" $tenv $CONV_ENV RUST_LOG=warn,tract_linalg=debug \
        timeout 900 qemu-aarch64-static "$ABIN" classify --model "$MODEL" --format jsonl \
        --threads 1 $VIEW_ARGS $INPUTS >"$OUT/$cpu.jsonl" 2>"$OUT/$cpu.log"; then
        cat "$OUT/$cpu.log" >&2
        die "aarch64 classify under -cpu $cpu failed"
    fi
    # What tract made of this CPU: its kind, the instruction sets, the matmul tiers in order.
    grep -E 'CPU (part|kind|optimisation)|ISA:|mmm tiers|SVE|SME' "$OUT/$cpu.log" |
        sed -E 's/^.*(tract_linalg[^ ]*: )/  \1/' | sort -u || true
    jsonl_to_tsv <"$OUT/$cpu.jsonl" >"$OUT/$cpu.tsv"
}

# The emulated CPUs run side by side: each qemu is single-threaded (--threads 1).
classify_arm_all() {
    local cpu pids=() failed=0
    for cpu in $CPUS; do
        classify_arm "$cpu" >"$OUT/$cpu.summary" 2>&1 &
        pids+=($!)
    done
    for cpu in $CPUS; do
        wait "${pids[0]}" || failed=1
        pids=("${pids[@]:1}")
        cat "$OUT/$cpu.summary"
    done
    [ $failed = 0 ] || die "aarch64 classify failed for $(basename "$MODEL")"
}

compare() {
    local files=() cpu
    for cpu in $CPUS; do files+=("$OUT/$cpu.tsv"); done
    # shellcheck disable=SC2086
    awk -v tol="$TOL" -v cpus="$CPUS" '
    BEGIN { FS = "\t"; ncpu = split(cpus, cpu, " ") }
    FILENAME == ARGV[1] { x86[$1] = $2; order[++n] = $1; next }
    { f = 0; for (i = 1; i <= ncpu; i++) if (FILENAME ~ ("/" cpu[i] "\\.tsv$")) f = i
      arm[f, $1] = $2; seen[f]++ }
    END {
        bad = 0; max = 0
        if (n == 0) { print "parity: x86 classified no image" > "/dev/stderr"; bad = 1 }
        printf "%-40s %12s", "image", "x86"; for (i = 1; i <= ncpu; i++) printf " %12s", cpu[i]; printf "\n"
        for (k = 1; k <= n; k++) {
            path = order[k]; name = path; sub(/^.*\//, "", name)
            printf "%-40s %12s", name, x86[path]
            for (i = 1; i <= ncpu; i++) {
                a = arm[i, path]
                printf " %12s", (a == "" ? "missing" : a)
                if (x86[path] == "-" || a == "" || a == "-") { bad = 1; continue }
                d = a - x86[path]; if (d < 0) d = -d
                if (d > cmax[i]) cmax[i] = d
                if (d > max) max = d
            }
            printf "\n"
        }
        for (i = 1; i <= ncpu; i++) {
            if (seen[i] != n) { printf "parity: %s classified %d image(s), x86 %d\n", cpu[i], seen[i], n > "/dev/stderr"; bad = 1 }
            printf "max_abs_diff[%s]=%.3g\n", cpu[i], cmax[i]
        }
        if (bad) print "parity: an image failed or is missing on one side" > "/dev/stderr"
        if (max > tol + 0) { printf "parity: max_abs_diff %.3g exceeds %s\n", max, tol > "/dev/stderr"; bad = 1 }
        printf "max_abs_diff=%.3g\n", max
        exit bad
    }' "$OUT/x86.tsv" "${files[@]}"
}

status=0
overall=0
# Extra environment of the aarch64 runs: the Winograd pass below sets HISTOSCREEN_CONV.
CONV_ENV=""
for MODEL in "${MODELS[@]}"; do
    name=$(basename "$MODEL" .onnx)
    OUT=$WORK/$name
    mkdir -p "$OUT"
    # The dense whole-field pass costs ~6 tiles' time per sample under qemu: the f32 model runs
    # it on HS_FIELD_SAMPLES samples, every variant runs the centre tile on all of them (same
    # kernels, the parity they check is the arithmetic's).
    if grep -q '"precision": "f32"' "${MODEL%.onnx}.json" && [ "${HS_FIELD_SAMPLES:-2}" != 0 ]; then
        VIEW_ARGS="--view field"
        INPUTS=$(find "$SAMPLES" -name '*.png' | sort | head -n "${HS_FIELD_SAMPLES:-2}" | tr '\n' ' ')
        stage "classify x86 $name (whole field)" classify_x86
        stage "classify aarch64 ($CPUS) $name (whole field)" classify_arm_all
        echo "--- $name, whole field (tolerance $TOL)"
        if ! compare | tee "$OUT/parity.txt"; then status=1; fi
        overall=$(awk -v a="$overall" -F= '/^max_abs_diff=/ { b = $2 + 0; print (b > a ? b : a); found = 1 } END { if (!found) print a }' "$OUT/parity.txt")
    fi
    VIEW_ARGS="--view centre"
    INPUTS=$SAMPLES
    stage "classify x86 $name" classify_x86
    stage "classify aarch64 ($CPUS) $name" classify_arm_all
    echo "--- $name (tolerance $TOL)"
    if ! compare | tee "$OUT/parity.txt"; then status=1; fi
    overall=$(awk -v a="$overall" -F= '/^max_abs_diff=/ { b = $2 + 0; print (b > a ? b : a); found = 1 } END { if (!found) print a }' "$OUT/parity.txt")
    # The edge's own Winograd convolutions (all five layers, --conv winograd) on ARM against tract's
    # convolution on x86, centre tiles: the same op must give the same probabilities there.
    if grep -q '"precision": "f32"' "${MODEL%.onnx}.json"; then
        CONV_ENV="HISTOSCREEN_CONV=winograd"
        stage "classify aarch64 ($CPUS) $name, --conv winograd" classify_arm_all
        CONV_ENV=""
        grep -h "winograd" "$OUT"/*.log | sort -u | head -n 8 || true
        echo "--- $name, Winograd on aarch64 against tract on x86 (tolerance $TOL)"
        if ! compare | tee "$OUT/parity.txt"; then status=1; fi
        overall=$(awk -v a="$overall" -F= '/^max_abs_diff=/ { b = $2 + 0; print (b > a ? b : a); found = 1 } END { if (!found) print a }' "$OUT/parity.txt")
    fi
done
echo "::: aarch64 stages done in $((SECONDS - t0)) s; ${#MODELS[@]} model(s), tolerance $TOL"
echo "max_abs_diff=$overall"
exit $status

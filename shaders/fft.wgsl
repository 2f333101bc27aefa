// Batched 2-D FFT (decimation in time, radix 2 to 16) and the spectral-pooling
// crop/merge and pad/split steps.
//
// Complex data is interleaved: a complex tensor is (planes, M, M, 2) f32, read here as
// array<vec2<f32>> (re, im). A 2-D FFT is a row pass then a column pass; each pass
// transforms `lines` = planes·M lines of M points. Line l is plane l / M, index k = l % M;
// its first point is at plane·M·M + k·ls and its points are es apart (rows: ls = M,
// es = 1; columns: ls = 1, es = M).
//
// X[k] = scale · Σ_n x[n] · exp(sign · 2πi · k·n / M): sign −1 is the forward transform,
// +1 the inverse; the caller chooses the scale (the ops apply 1/M² once, in the row
// pass, for the normalised inverse).
//
// The forms of a pass:
// - fft_wg: a workgroup loads `lpw` whole lines into workgroup memory (bit-reversed),
//   runs the log2(M) stages there and writes them back. An invocation takes 16 points
//   at a time into registers and runs four stages on them (a radix-16 butterfly; the
//   log2(M) mod 4 first stages as one radix-2, -4 or -8), so a 256-point pass costs 2
//   barriers after the load instead of 8: barriers are what lavapipe pays most for, and
//   workgroup-memory traffic is what a GPU does; both drop 4×. (Radix-4 only measured
//   1.2–2× slower on lavapipe; a twiddle table in workgroup memory was slower than sin/cos.)
// - The same entry point reads real lines or writes real results, two real lines per
//   complex transform (half the work), and runs spectral pooling's crop/merge fused into
//   the store (or its pad/split into the load) on lines of a general layout, so that
//   pooling's second M-point pass only transforms the h kept lines: the immediates
//   `load` and `store` choose (see fft_wg).
// - fft_bitrev then fft_r2_global / fft_r4_global: radix-2/4 stages in global memory,
//   one dispatch per stage pair (the dispatch boundary is the barrier), for lines that
//   do not fit in workgroup memory (and, forced, in the tests).

struct Params {
    n: u32,      // invocations needed (1-D kernels)
    m: u32,      // points per line M (a power of two ≥ 2)
    log2m: u32,
    lines: u32,  // lines to transform = planes·M
    lpw: u32,    // lines per workgroup (fft_wg)
    es: u32,     // stride between the points of a line
    ls: u32,     // stride between the lines of a plane
    half: u32,   // span of the (first) stage of a global butterfly pass
    h: u32,      // spectral pooling: the output size h (the input size is m)
    sign: f32,   // −1 forward, +1 inverse
    scale: f32,  // applied where the data is written
    // The general line layout of the fused spectral passes (LOAD_GENERAL, STORE_CROP, …):
    // line l is plane l / lpp, index l % lpp; input point i of it is at
    // plane·ps_in + index·ls + i·es, output point j at plane·ps_out + index·ls_out + j·es_out.
    lpp: u32,
    ps_in: u32,
    ps_out: u32,
    ls_out: u32,
    es_out: u32,
    load: u32,   // fft_wg: how the tile is loaded (LOAD_*)
    store: u32,  // fft_wg: how it is stored (STORE_*)
}

var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> src: array<vec2<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec2<f32>>;
// Real views for the real↔complex conversions.
@group(0) @binding(2) var<storage, read> src_real: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst_real: array<f32>;
// tw[j] = (cos, sin)(2π·j/TW_N), j < TW_N/2: the twiddles of every line length ≤ TW_N
// (bound by every entry point that runs butterflies with twiddles).
@group(0) @binding(4) var<storage, read> tw: array<vec2<f32>>;

const WG: u32 = 256u;     // invocations of the 1-D kernels
const WG_FFT: u32 = 64u;  // invocations of fft_wg
const TILE: u32 = 1024u;  // complex points in workgroup memory (8 KiB)
const TW_N: u32 = 4096u;  // points of the circle the twiddle table samples (max M)

var<workgroup> buf: array<vec2<f32>, TILE>;

fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

// exp(sign · 2πi · pos/len) for pos/len in [0, 1/2), len a power of two ≤ TW_N, from the
// table computed in f64 on the host (Vulkan only bounds sin/cos to 2^-11 absolute error).
fn twiddle(pos: u32, len: u32) -> vec2<f32> {
    let w = tw[pos * (TW_N / len)];
    return vec2<f32>(w.x, p.sign * w.y);
}

fn bitrev(i: u32) -> u32 {
    return reverseBits(i) >> (32u - p.log2m);
}

// Index of point i of line l.
fn point(l: u32, i: u32) -> u32 {
    let plane = l >> p.log2m;
    let k = l & (p.m - 1u);
    return plane * p.m * p.m + k * p.ls + i * p.es;
}

// Two DIT stages (spans half and 2·half) on the four points a0..a3 that are `half` apart,
// at position pos < half of their group: one radix-4 butterfly. w2 = exp(sign·2πi·pos /
// (4·half)) and w1 = w2² are the twiddles of the two stages.
fn radix4_tw(a: array<vec2<f32>, 4>, w1: vec2<f32>, w2: vec2<f32>) -> array<vec2<f32>, 4> {
    // w2 · exp(sign · iπ/2) = w2 · (sign · i)
    let w3 = vec2<f32>(-p.sign * w2.y, p.sign * w2.x);
    var t = cmul(w1, a[1]);
    let b0 = a[0] + t;
    let b1 = a[0] - t;
    t = cmul(w1, a[3]);
    let b2 = a[2] + t;
    let b3 = a[2] - t;
    t = cmul(w2, b2);
    let c0 = b0 + t;
    let c2 = b0 - t;
    t = cmul(w3, b3);
    let c1 = b1 + t;
    let c3 = b1 - t;
    return array<vec2<f32>, 4>(c0, c1, c2, c3);
}

fn radix4(a: array<vec2<f32>, 4>, pos: u32, half: u32) -> array<vec2<f32>, 4> {
    let w2 = twiddle(pos, 4u * half);
    return radix4_tw(a, cmul(w2, w2), w2);
}

// (cos, sin)(2π·q/16), q < 8: the roots of unity of the radix-8 and radix-16 stages.
const ROOT16 = array<vec2<f32>, 8>(
    vec2<f32>(1.0, 0.0),
    vec2<f32>(0.9238795325112867, 0.3826834323650898),
    vec2<f32>(0.7071067811865476, 0.7071067811865476),
    vec2<f32>(0.3826834323650898, 0.9238795325112867),
    vec2<f32>(0.0, 1.0),
    vec2<f32>(-0.3826834323650898, 0.9238795325112867),
    vec2<f32>(-0.7071067811865476, 0.7071067811865476),
    vec2<f32>(-0.9238795325112867, 0.3826834323650898),
);

// exp(sign·2πi·q/16)
fn root16(q: u32) -> vec2<f32> {
    let r = ROOT16[q];
    return vec2<f32>(r.x, p.sign * r.y);
}

// One DIT stage t (span 2^t·half) on R points held in registers that are `half` apart,
// at position pos < half of their group: pairs (j, j + 2^t) for bit t of j clear, with
// twiddle exp(sign·2πi·(pos + q·half)/(2^(t+1)·half)), q = j mod 2^t, factored as the
// stage's base twiddle times a constant root of unity.
fn dit_stage16(a: ptr<function, array<vec2<f32>, 16>>, t: u32, r: u32, pos: u32, half: u32) {
    let span = 1u << t;
    let w0 = twiddle(pos, 2u * span * half);
    for (var b = 0u; b < 8u; b++) {
        if (b >= r / 2u) { break; }
        let q = b & (span - 1u);
        let j = ((b >> t) << (t + 1u)) | q;
        let w = cmul(w0, root16(q * (8u >> t)));
        let x = (*a)[j];
        let y = cmul(w, (*a)[j + span]);
        (*a)[j] = x + y;
        (*a)[j + span] = x - y;
    }
}

// The first log2(M) mod 4 stages (spans 1, 2, 4: twiddles are constant roots of unity,
// pos = 0) on groups of 2, 4 or 8 consecutive points, in registers. Each case has
// constant bounds, so that the compiler unrolls it.
fn first_stages(lid: u32, count: u32, k: u32) {
    if (k == 1u) {
        for (var j = lid; j < count / 2u; j += WG_FFT) {
            let a = buf[2u * j];
            let b = buf[2u * j + 1u];
            buf[2u * j] = a + b;
            buf[2u * j + 1u] = a - b;
        }
    } else if (k == 2u) {
        for (var u = lid; u < count / 4u; u += WG_FFT) {
            var a: array<vec2<f32>, 4>;
            for (var j = 0u; j < 4u; j++) {
                a[j] = buf[4u * u + j];
            }
            a = radix4_tw(a, vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 0.0));
            for (var j = 0u; j < 4u; j++) {
                buf[4u * u + j] = a[j];
            }
        }
    } else {
        for (var u = lid; u < count / 8u; u += WG_FFT) {
            var a: array<vec2<f32>, 16>;
            for (var j = 0u; j < 8u; j++) {
                a[j] = buf[8u * u + j];
            }
            dit_stage16(&a, 0u, 8u, 0u, 1u);
            dit_stage16(&a, 1u, 8u, 0u, 1u);
            dit_stage16(&a, 2u, 8u, 0u, 1u);
            for (var j = 0u; j < 8u; j++) {
                buf[8u * u + j] = a[j];
            }
        }
    }
}

// Four stages (spans half … 8·half) on groups of 16 points `half` apart, in registers;
// constant bounds, so that the compiler unrolls it and keeps the points in registers.
fn radix16_pass(lid: u32, count: u32, half: u32) {
    let shift = p.log2m - 4u;
    for (var u = lid; u < count / 16u; u += WG_FFT) {
        let line = u >> shift;
        let v = u & ((p.m >> 4u) - 1u);
        let pos = v & (half - 1u);
        let base = line * p.m + (v - pos) * 16u + pos;
        var a: array<vec2<f32>, 16>;
        for (var j = 0u; j < 16u; j++) {
            a[j] = buf[base + j * half];
        }
        dit_stage16(&a, 0u, 16u, pos, half);
        dit_stage16(&a, 1u, 16u, pos, half);
        dit_stage16(&a, 2u, 16u, pos, half);
        dit_stage16(&a, 3u, 16u, pos, half);
        for (var j = 0u; j < 16u; j++) {
            buf[base + j * half] = a[j];
        }
    }
}

// All log2(M) stages of the tile's lines, in workgroup memory: log2(M) mod 4 first stages
// (radix 2, 4 or 8), then radix-16 passes, one barrier per trip.
fn tile_stages(lid: u32, count: u32) {
    let rem = p.log2m & 3u;
    var half = 1u;
    if (rem != 0u) {
        first_stages(lid, count, rem);
        workgroupBarrier();
        half = 1u << rem;
    }
    for (; half < p.m; half *= 16u) {
        radix16_pass(lid, count, half);
        workgroupBarrier();
    }
}

fn point_in(l: u32, i: u32) -> u32 {
    return (l / p.lpp) * p.ps_in + (l % p.lpp) * p.ls + i * p.es;
}

fn point_out(l: u32, j: u32) -> u32 {
    return (l / p.lpp) * p.ps_out + (l % p.lpp) * p.ls_out + j * p.es_out;
}

// Bin j (of h) of tile line r after the crop/merge: Σ of its sources times their weight.
fn cropped(r: u32, j: u32) -> vec2<f32> {
    let s = crop_sources(j);
    let a = u32(s.x);
    let b = u32(s.y);
    var v = buf[r * p.m + a];
    if (b != a) { v += buf[r * p.m + b]; }
    return (p.scale * s.z) * v;
}

// Point i (of M) of line l after the pad/split of its h input points.
fn padded(l: u32, i: u32) -> vec2<f32> {
    let t = pad_target(i);
    if (t.y == 0.0) { return vec2<f32>(0.0, 0.0); }
    return t.y * src[point_in(l, u32(t.x))];
}

// The real-pair passes in both layouts: `general` picks the fused spectral passes' line
// layout (point_in / point_out) over the plain (planes, M, M) one (point). Uniform in a
// dispatch, so the branch costs nothing per point.
fn at_in(l: u32, i: u32, general: bool) -> u32 {
    if (general) { return point_in(l, i); }
    return point(l, i);
}

fn at_out(l: u32, j: u32, general: bool) -> u32 {
    if (general) { return point_out(l, j); }
    return point(l, j);
}

// Load of a real-input pass: tile line r (complex line l = first + r < lines) gets real
// lines 2l and 2l+1 of src_real as x0 + i·x1, bit-reversed.
fn load_real_pair(lid: u32, first: u32, count: u32, general: bool) {
    let mask = p.m - 1u;
    for (var e = lid; e < count; e += WG_FFT) {
        let r = e >> p.log2m;
        let l = first + r;
        if (l < p.lines) {
            let i = e & mask;
            buf[r * p.m + bitrev(i)] = vec2<f32>(src_real[at_in(2u * l, i, general)],
                                                 src_real[at_in(2u * l + 1u, i, general)]);
        }
    }
}

// P0 + i·P1 of two complex points whose lines have real transforms: the real and
// imaginary parts of the packed transform are then the two real results.
fn packed(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x - b.y, a.y + b.x);
}

// Store of a real-output pass: the real and imaginary parts of tile line r, scaled, are
// real lines 2l and 2l+1 of dst_real.
fn store_real_pair(lid: u32, first: u32, count: u32, general: bool) {
    let mask = p.m - 1u;
    for (var e = lid; e < count; e += WG_FFT) {
        let l = first + (e >> p.log2m);
        if (l < p.lines) {
            let j = e & mask;
            let v = p.scale * buf[e];
            dst_real[at_out(2u * l, j, general)] = v.x;
            dst_real[at_out(2u * l + 1u, j, general)] = v.y;
        }
    }
}

// Bin k of the spectra of the two real lines packed into tile line r as z = x0 + i·x1:
// X0[k] = (Z[k] + conj Z[−k]) / 2, X1[k] = (Z[k] − conj Z[−k]) / (2i).
fn unpacked(r: u32, k: u32, which: u32) -> vec2<f32> {
    let zk = buf[r * p.m + k];
    let zm = buf[r * p.m + ((p.m - k) & (p.m - 1u))];
    if (which == 0u) {
        return 0.5 * vec2<f32>(zk.x + zm.x, zk.y - zm.y);
    }
    return 0.5 * vec2<f32>(zk.y + zm.y, zm.x - zk.x);
}

// cropped() for one of the two packed real lines.
fn cropped_unpacked(r: u32, j: u32, which: u32) -> vec2<f32> {
    let s = crop_sources(j);
    let a = u32(s.x);
    let b = u32(s.y);
    var v = unpacked(r, a, which);
    if (b != a) { v += unpacked(r, b, which); }
    return (p.scale * s.z) * v;
}

// The workgroup-memory passes: one entry point, whose load into workgroup memory and
// store out of it are chosen by the immediates `load` and `store` (uniform in a dispatch,
// so each is one branch per workgroup). One pipeline instead of seven: on lavapipe, which
// compiles a pipeline on its first dispatch, the radix-16 stages they share took LLVM
// about 0.8 s in each. A workgroup takes `lpw` lines (tile line r is line first + r <
// lines) of M points; lines past the end (in the last workgroup) are transformed from
// garbage and not stored. The forms (load, store):
// - complex (LOAD_COMPLEX, STORE_COMPLEX): src, dst (planes, M, M) complex. Neighbouring
//   invocations take neighbouring addresses: along the line for rows, across lines for
//   columns (lpw is a power of two).
// - real in (LOAD_REAL_PAIR, STORE_UNPACKED): src_real (planes, M, M) real, dst complex.
//   Tile line r carries real lines 2l and 2l+1 as x0 + i·x1; the store separates their
//   spectra by symmetry (see unpacked). Half the work of a complex pass.
// - real out (LOAD_PACKED, STORE_REAL_PAIR): for lines whose transforms are real
//   (Hermitian input, as in spectral pooling), two per transform: tile line r loads
//   P0 + i·P1 from lines 2l and 2l+1; the real and imaginary parts of the result are the
//   two real outputs (dst_real).
// - crop (LOAD_GENERAL, STORE_CROP): spectral pooling's forward M-point passes with the
//   crop/merge fused into the store: src lines of M complex points (lpp, ps_in, ls, es),
//   dst lines of h complex points (lpp, ps_out, ls_out, es_out), dst = scale ·
//   crop(FFT(src)) along the line. The row pass writes (planes, M, h), so the column pass
//   transforms h columns, not M.
// - crop, real in (LOAD_REAL_PAIR_GENERAL, STORE_CROP_UNPACKED): the first pass of spectral
//   pooling, on real lines two per transform, at half the work of a complex pass.
// - pad (LOAD_PAD, STORE_GENERAL): the adjoint of crop: src lines of h complex points
//   (lpp, ps_in, ls, es), dst lines of M complex points (lpp, ps_out, ls_out, es_out),
//   dst = scale · FFT(pad(src)) along the line (the pad/split fused into the load).
// - pad, real out (LOAD_PAD_PACKED, STORE_REAL_PAIR_GENERAL): pad for two lines whose
//   transforms are real (Hermitian spectra, as in spectral pooling's backward), in one
//   complex transform. The last pass of spectral pooling's backward.
const LOAD_COMPLEX: u32 = 0u;
const LOAD_REAL_PAIR: u32 = 1u;
const LOAD_REAL_PAIR_GENERAL: u32 = 2u;
const LOAD_PACKED: u32 = 3u;
const LOAD_GENERAL: u32 = 4u;
const LOAD_PAD: u32 = 5u;
const LOAD_PAD_PACKED: u32 = 6u;
const STORE_COMPLEX: u32 = 0u;
const STORE_UNPACKED: u32 = 1u;
const STORE_REAL_PAIR: u32 = 2u;
const STORE_REAL_PAIR_GENERAL: u32 = 3u;
const STORE_CROP: u32 = 4u;
const STORE_CROP_UNPACKED: u32 = 5u;
const STORE_GENERAL: u32 = 6u;

// Tile line and point of element e of the complex form's loops: along the line, or across
// lines for a column pass of several lines.
fn complex_at(e: u32) -> vec2<u32> {
    let across = p.es != 1u && p.lpw > 1u;
    if (across) {
        return vec2<u32>(e & (p.lpw - 1u), e >> firstTrailingBit(p.lpw));
    }
    return vec2<u32>(e >> p.log2m, e & (p.m - 1u));
}

fn load_tile(lid: u32, first: u32, count: u32) {
    let mask = p.m - 1u;
    switch p.load {
        case LOAD_REAL_PAIR: { load_real_pair(lid, first, count, false); }
        case LOAD_REAL_PAIR_GENERAL: { load_real_pair(lid, first, count, true); }
        case LOAD_COMPLEX: {
            for (var e = lid; e < count; e += WG_FFT) {
                let ri = complex_at(e);
                if (first + ri.x < p.lines) {
                    buf[ri.x * p.m + bitrev(ri.y)] = src[point(first + ri.x, ri.y)];
                }
            }
        }
        default: {
            for (var e = lid; e < count; e += WG_FFT) {
                let r = e >> p.log2m;
                let l = first + r;
                if (l < p.lines) {
                    let i = e & mask;
                    var v: vec2<f32>;
                    switch p.load {
                        case LOAD_PACKED: { v = packed(src[point(2u * l, i)], src[point(2u * l + 1u, i)]); }
                        case LOAD_GENERAL: { v = src[point_in(l, i)]; }
                        case LOAD_PAD: { v = padded(l, i); }
                        default: { v = packed(padded(2u * l, i), padded(2u * l + 1u, i)); }
                    }
                    buf[r * p.m + bitrev(i)] = v;
                }
            }
        }
    }
}

fn store_tile(lid: u32, first: u32, count: u32) {
    let mask = p.m - 1u;
    switch p.store {
        case STORE_REAL_PAIR: { store_real_pair(lid, first, count, false); }
        case STORE_REAL_PAIR_GENERAL: { store_real_pair(lid, first, count, true); }
        case STORE_COMPLEX: {
            for (var e = lid; e < count; e += WG_FFT) {
                let ri = complex_at(e);
                if (first + ri.x < p.lines) {
                    dst[point(first + ri.x, ri.y)] = p.scale * buf[ri.x * p.m + ri.y];
                }
            }
        }
        case STORE_UNPACKED: {
            for (var e = lid; e < 2u * count; e += WG_FFT) {
                let r = e >> (p.log2m + 1u);
                let which = (e >> p.log2m) & 1u;
                let k = e & mask;
                if (first + r < p.lines) {
                    dst[point(2u * (first + r) + which, k)] = p.scale * unpacked(r, k, which);
                }
            }
        }
        case STORE_CROP: {
            for (var e = lid; e < p.lpw * p.h; e += WG_FFT) {
                let r = e / p.h;
                let j = e % p.h;
                if (first + r < p.lines) {
                    dst[point_out(first + r, j)] = cropped(r, j);
                }
            }
        }
        case STORE_CROP_UNPACKED: {
            for (var e = lid; e < 2u * p.lpw * p.h; e += WG_FFT) {
                let r = e / (2u * p.h);
                let which = (e / p.h) & 1u;
                let j = e % p.h;
                if (first + r < p.lines) {
                    dst[point_out(2u * (first + r) + which, j)] = cropped_unpacked(r, j, which);
                }
            }
        }
        default: {
            for (var e = lid; e < count; e += WG_FFT) {
                let r = e >> p.log2m;
                if (first + r < p.lines) {
                    dst[point_out(first + r, e & mask)] = p.scale * buf[e];
                }
            }
        }
    }
}

@compute @workgroup_size(64)
fn fft_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let first = (wid.y * nwg.x + wid.x) * p.lpw;
    let count = p.lpw * p.m;
    load_tile(lid, first, count);
    workgroupBarrier();
    tile_stages(lid, count);
    store_tile(lid, first, count);
}

// src, dst: (planes, M, M) complex. First step of a global-memory pass: dst = scale · src
// with every line in bit-reversed order. One invocation per point.
@compute @workgroup_size(256)
fn fft_bitrev(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let e = flat(wid, nwg, lid);
    if (e >= p.n) { return; }
    let l = e >> p.log2m;
    let i = e & (p.m - 1u);
    dst[point(l, bitrev(i))] = p.scale * src[point(l, i)];
}

// dst: (planes, M, M) complex, in place. The radix-2 stage of span 1 (twiddle 1), for an
// odd log2(M). One invocation per butterfly: n = lines·M/2.
@compute @workgroup_size(256)
fn fft_r2_global(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let j = flat(wid, nwg, lid);
    if (j >= p.n) { return; }
    let l = j >> (p.log2m - 1u);
    let v = j & ((p.m >> 1u) - 1u);
    let i0 = point(l, 2u * v);
    let i1 = point(l, 2u * v + 1u);
    let a = dst[i0];
    let b = dst[i1];
    dst[i0] = a + b;
    dst[i1] = a - b;
}

// dst: (planes, M, M) complex, in place. Stages of spans half and 2·half as radix-4
// butterflies. One invocation per butterfly: n = lines·M/4.
@compute @workgroup_size(256)
fn fft_r4_global(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let u = flat(wid, nwg, lid);
    if (u >= p.n) { return; }
    let l = u >> (p.log2m - 2u);
    let v = u & ((p.m >> 2u) - 1u);
    let pos = v & (p.half - 1u);
    let base = (v - pos) * 4u + pos;
    var idx: array<u32, 4>;
    var a: array<vec2<f32>, 4>;
    for (var k = 0u; k < 4u; k++) {
        idx[k] = point(l, base + k * p.half);
        a[k] = dst[idx[k]];
    }
    a = radix4(a, pos, p.half);
    for (var k = 0u; k < 4u; k++) {
        dst[idx[k]] = a[k];
    }
}

// src_real: n reals; dst: n complex: dst[i] = (src_real[i], 0).
@compute @workgroup_size(256)
fn to_complex(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    dst[i] = vec2<f32>(src_real[i], 0.0);
}

// src: n complex; dst_real: n reals: dst_real[i] = re(src[i]).
@compute @workgroup_size(256)
fn real_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    dst_real[i] = src[i].x;
}

// Spectral pooling along one axis: output bin a (0 ≤ a < h) of an M-point spectrum takes
// bins a (a < h/2) and a + M − h (a > h/2) with weight 1, and merges the two Nyquist
// candidates h/2 and M − h/2 with weight √½ each (one bin with weight √2 when h = M).
// Returns (first source, second source, weight of each); second = first when single.
fn crop_sources(a: u32) -> vec3<f32> {
    let hh = p.h / 2u;
    if (a < hh) { return vec3<f32>(f32(a), f32(a), 1.0); }
    if (a > hh) { return vec3<f32>(f32(a + p.m - p.h), f32(a + p.m - p.h), 1.0); }
    if (p.h == p.m) { return vec3<f32>(f32(a), f32(a), 1.4142135623730951); }
    return vec3<f32>(f32(hh), f32(p.m - hh), 0.7071067811865476);
}

// src: (planes, M, M) complex spectrum; dst: (planes, h, h) complex.
// dst[a, b] = scale · Σ_{i ∈ S(a), j ∈ S(b)} w_i·w_j · src[i, j]  (the 2-D merge is the
// product of the per-axis ones, so a corner bin is ½ of the sum of four).
@compute @workgroup_size(256)
fn spectral_crop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let e = flat(wid, nwg, lid);
    if (e >= p.n) { return; }
    let hh = p.h * p.h;
    let plane = e / hh;
    let a = (e % hh) / p.h;
    let b = e % p.h;
    let sa = crop_sources(a);
    let sb = crop_sources(b);
    let rows = vec2<u32>(u32(sa.x), u32(sa.y));
    let cols = vec2<u32>(u32(sb.x), u32(sb.y));
    let base = plane * p.m * p.m;
    var acc: vec2<f32>;
    if (rows.x == rows.y && cols.x == cols.y) {
        acc = src[base + rows.x * p.m + cols.x];
    } else if (rows.x == rows.y) {
        acc = src[base + rows.x * p.m + cols.x] + src[base + rows.x * p.m + cols.y];
    } else if (cols.x == cols.y) {
        acc = src[base + rows.x * p.m + cols.x] + src[base + rows.y * p.m + cols.x];
    } else {
        acc = src[base + rows.x * p.m + cols.x] + src[base + rows.x * p.m + cols.y]
            + src[base + rows.y * p.m + cols.x] + src[base + rows.y * p.m + cols.y];
    }
    dst[e] = (p.scale * sa.z * sb.z) * acc;
}

// The transpose of crop_sources: source bin i of the M-point axis feeds output bin
// (x = index, y = weight), or nothing (y = 0) when it is cropped away.
fn pad_target(i: u32) -> vec2<f32> {
    let hh = p.h / 2u;
    if (i < hh) { return vec2<f32>(f32(i), 1.0); }
    if (i > p.m - hh) { return vec2<f32>(f32(i + p.h - p.m), 1.0); }
    if (p.h == p.m) {
        // i == M/2 here (the only index between the two ranges above).
        return vec2<f32>(f32(i), 1.4142135623730951);
    }
    if (i == hh || i == p.m - hh) { return vec2<f32>(f32(hh), 0.7071067811865476); }
    return vec2<f32>(0.0, 0.0);
}

// src: (planes, h, h) complex; dst: (planes, M, M) complex. The adjoint of spectral_crop:
// dst[i, j] = scale · w_i·w_j · src[t(i), t(j)] where i, j feed output bins t(i), t(j)
// (zero where either was cropped away).
@compute @workgroup_size(256)
fn spectral_pad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = flat(wid, nwg, lid);
    if (e >= p.n) { return; }
    let mm = p.m * p.m;
    let plane = e / mm;
    let ti = pad_target((e % mm) / p.m);
    let tj = pad_target(e % p.m);
    let w = ti.y * tj.y;
    var v = vec2<f32>(0.0, 0.0);
    if (w != 0.0) {
        v = (p.scale * w) * src[plane * p.h * p.h + u32(ti.x) * p.h + u32(tj.x)];
    }
    dst[e] = v;
}

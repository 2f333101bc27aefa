// Convolutions other than the 1×1 one (that is `matmul.wgsl`).
//
// Depthwise k×k, stride 1, 'same' zero padding (pad K/2, K odd), no bias:
//   x (N, C, H, W), k (C, 1, K, K) → y (N, C, H, W)
//   y[n, c, i, j] = Σ_{a,b} x[n, c, i + a − K/2, j + b − K/2] · k[c, a, b]
// - dw_conv: the forward; with FLIP = true the same loop gives the input gradient
//   (a correlation of dy with the kernel turned by 180°).
// - dw_conv_kgrad: the kernel gradient as partial sums, one per (part, c, tap), finished
//   by a sum over the parts (ops::reduce::sum_outer) — no atomics.
//
// Dense conv (kh×kw, stride s, zero padding pad, bias) is an im2col followed by the
// register-blocked matmul of `matmul.wgsl`:
//   x (N, Cin, H, W) → col (N, Cin·kh·kw, Ho·Wo),
//   col[n, (ci, a, b), (oi, oj)] = x[n, ci, oi·s + a − pad, oj·s + b − pad] (0 outside)
// - im2col: x → col;  col2im: the adjoint (a gather: each x pixel sums the col entries
//   it was copied to), which turns the column gradient into the input gradient.
//
// One invocation per row strip of 4 outputs (dw_conv: 8), 256 per workgroup, flat index
// over a 2-D grid (runtime::grid_1d).

struct Params {
    n: u32,
    c: u32,        // channels (Cin for im2col/col2im)
    h: u32,
    w: u32,
    kh: u32,       // dense kernel rows (dw_conv_kgrad: rows per partial sum; dw_conv: unused)
    kw: u32,       // dense kernel columns (dw_conv_cpu_any: K; the other depthwise: unused)
    stride: u32,   // informational: the kernels use the STRIDE override
    pad: u32,
    ho: u32,
    wo: u32,
    total: u32,    // invocations that do work
    parts: u32,    // dw_conv_kgrad: partial sums per (c, tap)
}

var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// vec4 views of src and dst (dw_conv_cpu).
@group(0) @binding(3) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst4: array<vec4<f32>>;
// A vec4 view of wt (dy in dw_conv_kgrad4).
@group(0) @binding(5) var<storage, read> wt4: array<vec4<f32>>;

const WG: u32 = 256u;
/// Outputs per invocation along a row: dw_conv_kgrad, im2col, col2im…
const TW: u32 = 4u;
/// …and dw_conv, whose window of K + 7 inputs per row fits in registers.
const DW_TW: u32 = 8u;
/// Output rows per invocation of dw_conv_cpu.
const DW_R: u32 = 4u;

/// Depthwise kernel size (1, 3 or 5): one pipeline per size, so the tap loops unroll
/// (dw_conv_cpu_any reads it from p.kw instead).
override K: u32 = 3u;
/// dw_conv computes the input gradient: the kernel is read turned by 180°.
override FLIP: bool = false;
/// Stride of im2col/col2im: one pipeline per stride, so its divisions are by a constant.
override STRIDE: u32 = 1u;

fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// x[row, jj] of one plane row, 0 outside 0..W (the zero padding). The index is clamped so
// the load itself is always in range.
fn row_at(row: u32, jj: i32) -> f32 {
    let inside = jj >= 0 && jj < i32(p.w);
    let v = src[row + u32(clamp(jj, 0, i32(p.w) - 1))];
    return select(0.0, v, inside);
}

// src is x (forward) or dy (FLIP, input gradient), wt is k (C, 1, K, K), dst like src.
// Each invocation computes y[n, c, i, j0..j0+7]: the K + 7 inputs of each of the K rows
// under the strip are loaded once and feed up to K outputs each.
@compute @workgroup_size(256)
fn dw_conv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let strips = (p.w + DW_TW - 1u) / DW_TW;
    let js = t % strips;
    let r = t / strips;             // (n·C + c)·H + i
    let i = r % p.h;
    let c = (r / p.h) % p.c;
    let j0 = js * DW_TW;
    let plane = (r - i) * p.w;
    let half = i32(K / 2u);
    let kbase = c * K * K;
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    for (var a = 0u; a < K; a++) {
        let ii = i32(i) + i32(a) - half;
        if (ii < 0 || ii >= i32(p.h)) { continue; }
        let row = plane + u32(ii) * p.w;
        var win: array<f32, 12>;
        for (var b = 0u; b < K + DW_TW - 1u; b++) {
            win[b] = row_at(row, i32(j0 + b) - half);
        }
        for (var b = 0u; b < K; b++) {
            var tap = a * K + b;
            if (FLIP) { tap = K * K - 1u - tap; }
            let kv = vec4<f32>(wt[kbase + tap]);
            lo = fma(kv, vec4<f32>(win[b], win[b + 1u], win[b + 2u], win[b + 3u]), lo);
            hi = fma(kv, vec4<f32>(win[b + 4u], win[b + 5u], win[b + 6u], win[b + 7u]), hi);
        }
    }
    let o = r * p.w + j0;
    let vals = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
    for (var m = 0u; m < DW_TW; m++) {
        if (j0 + m < p.w) { dst[o + m] = vals[m]; }
    }
}

/// Columns j0 − 4 … j0 + 11 of the plane row whose first vec4 is `row` (zeros outside the
/// map): the four aligned vec4s from `q0`, the one of column j0 − 4.
fn dw_window(row: u32, q0: i32) -> array<f32, 16> {
    let q = i32(p.w / 4u);
    var win: array<f32, 16>;
    for (var g = 0; g < 4; g++) {
        let qq = q0 + g;
        let x4 = select(vec4<f32>(0.0), src4[row + u32(clamp(qq, 0, q - 1))], qq >= 0 && qq < q);
        win[4 * g] = x4.x;
        win[4 * g + 1] = x4.y;
        win[4 * g + 2] = x4.z;
        win[4 * g + 3] = x4.w;
    }
    return win;
}

/// Input row v of `dw_conv_cpu`'s block (row i0 − K/2 + v of plane pl), v < DW_R + K − 1,
/// into the accumulators of the output rows it meets (none past the last v of K).
fn dw_row(v: u32, i0: u32, pl: u32, q0: i32, taps: ptr<function, array<f32, 25>>,
          acc: ptr<function, array<vec4<f32>, 8>>) {
    if (v >= DW_R + K - 1u) { return; }
    let q = p.w / 4u;
    let half = i32(K / 2u);
    let ii = i32(i0) + i32(v) - half;
    if (ii < 0 || ii >= i32(p.h)) { return; }
    var win = dw_window((pl * p.h + u32(ii)) * q, q0);
    // Output row i0 + r reads this input row through kernel row a = v − r.
    for (var r = 0u; r < DW_R; r++) {
        let a = i32(v) - i32(r);
        if (a < 0 || a >= i32(K)) { continue; }
        for (var b = 0u; b < K; b++) {
            let kv = vec4<f32>((*taps)[u32(a) * K + b]);
            let s = 4u + b - u32(half);  // win index of column j0 + b − K/2
            (*acc)[2u * r] = fma(kv, vec4<f32>(win[s], win[s + 1u], win[s + 2u], win[s + 3u]),
                                 (*acc)[2u * r]);
            (*acc)[2u * r + 1u] = fma(kv, vec4<f32>(win[s + 4u], win[s + 5u], win[s + 6u],
                                                    win[s + 7u]), (*acc)[2u * r + 1u]);
        }
    }
}

// The same as dw_conv, shaped for CPU adapters (lavapipe runs 8 invocations as one
// vector, and every load instruction costs about the same): a block of DW_R rows × 8
// columns per invocation, W a multiple of 4 (where W % 8 = 4 the last strip of a row has 4
// columns: its second vec4 is not stored). Each input row under the block is read once,
// as the four aligned vec4s of columns j0 − 4 .. j0 + 11 (zeros outside the map), and
// feeds up to K output rows; the K·K taps are read once; the outputs leave as vec4s.
@compute @workgroup_size(256)
fn dw_conv_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let q = p.w / 4u;                        // vec4s per row
    let strips = (p.w + DW_TW - 1u) / DW_TW;
    let blocks = (p.h + DW_R - 1u) / DW_R;
    let js = t % strips;
    let u = t / strips;
    let rb = u % blocks;
    let pl = u / blocks;                     // n·C + c
    let c = pl % p.c;
    let i0 = rb * DW_R;
    let q0 = i32(js * 2u) - 1;               // the vec4 of columns j0 − 4
    var taps: array<f32, 25>;
    for (var tap = 0u; tap < K * K; tap++) {
        var src_tap = tap;
        if (FLIP) { src_tap = K * K - 1u - tap; }
        taps[tap] = wt[c * K * K + src_tap];
    }
    var acc: array<vec4<f32>, 8>;            // (lo, hi) of each of the DW_R rows
    for (var m = 0u; m < 2u * DW_R; m++) { acc[m] = vec4<f32>(0.0); }
    // The DW_R + K − 1 ≤ 8 input rows one by one, each a call with a constant row, not a
    // loop: LLVM on lavapipe left that loop rolled, and inside a loop every write to an
    // accumulator is blended with the lanes' mask (at 16 × 256², min of 8 × 10 calls:
    // K 5, 4.7–5.0 → 3.1–3.5 ms; K 3, 2.6–3.4 → 1.8–2.7 ms). LLVM takes longer over the
    // straight-line code (K 5: 0.6 → 1.3–1.6 s, K 3: 0.4 → 0.7–1.0 s, once per pipeline and
    // machine while Mesa's shader cache keeps it); `dw_conv_cpu_any`, which small models'
    // first inference takes, keeps its loop.
    dw_row(0u, i0, pl, q0, &taps, &acc);
    dw_row(1u, i0, pl, q0, &taps, &acc);
    dw_row(2u, i0, pl, q0, &taps, &acc);
    dw_row(3u, i0, pl, q0, &taps, &acc);
    dw_row(4u, i0, pl, q0, &taps, &acc);
    dw_row(5u, i0, pl, q0, &taps, &acc);
    dw_row(6u, i0, pl, q0, &taps, &acc);
    dw_row(7u, i0, pl, q0, &taps, &acc);
    for (var r = 0u; r < DW_R; r++) {
        if (i0 + r < p.h) {
            let o = (pl * p.h + i0 + r) * q + js * 2u;
            dst4[o] = acc[2u * r];
            if (js * 2u + 1u < q) { dst4[o + 1u] = acc[2u * r + 1u]; }
        }
    }
}

// dw_conv_cpu for any K up to 5, read from p.kw, with its loop over the input rows kept
// a loop: one pipeline for every size that LLVM on lavapipe compiles in about 0.3 s, against
// 0.35 s and 0.51 s for the unrolled ones of K 3 and 5 (for small models, whose first
// inference is mostly compilation: `Gpu::set_few_pipelines`). The taps, indexed by the
// row loop's counter, live in memory; the window's columns stay constants. The same
// sums in the same order as dw_conv_cpu's. A copy of it, not a shared body: with K read
// through a select or passed to a shared function, dw_conv_cpu's own pipelines no longer
// unrolled and ran 3.5 times slower (at 256², F 16: 122 → 415 ms an inference).
@compute @workgroup_size(256)
fn dw_conv_cpu_any(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let q = p.w / 4u;                        // vec4s per row
    let strips = (p.w + DW_TW - 1u) / DW_TW;
    let blocks = (p.h + DW_R - 1u) / DW_R;
    let js = t % strips;
    let u = t / strips;
    let rb = u % blocks;
    let pl = u / blocks;                     // n·C + c
    let c = pl % p.c;
    let i0 = rb * DW_R;
    let q0 = i32(js * 2u) - 1;               // the vec4 of columns j0 − 4
    let kk = p.kw;
    let half = i32(kk / 2u);
    var taps: array<f32, 25>;
    for (var tap = 0u; tap < kk * kk; tap++) {
        var src_tap = tap;
        if (FLIP) { src_tap = kk * kk - 1u - tap; }
        taps[tap] = wt[c * kk * kk + src_tap];
    }
    var acc: array<vec4<f32>, 8>;            // (lo, hi) of each of the DW_R rows
    for (var m = 0u; m < 2u * DW_R; m++) { acc[m] = vec4<f32>(0.0); }
    for (var v = 0u; v < DW_R + kk - 1u; v++) {
        let ii = i32(i0) + i32(v) - half;
        if (ii < 0 || ii >= i32(p.h)) { continue; }
        var win = dw_window((pl * p.h + u32(ii)) * q, q0);
        // Output row i0 + r reads this input row through kernel row a = v − r.
        for (var r = 0u; r < DW_R; r++) {
            let a = i32(v) - i32(r);
            if (a < 0 || a >= i32(kk)) { continue; }
            // The window's columns j0 − 2 … j0 + 2 + 7 (the widest kernel's), as constants.
            for (var bb = 0u; bb < 5u; bb++) {
                let b = i32(bb) + half - 2;  // the tap's column
                if (b < 0 || b >= i32(kk)) { continue; }
                let kv = vec4<f32>(taps[u32(a) * kk + u32(b)]);
                let s = 2u + bb;             // win index of column j0 + b − K/2
                acc[2u * r] = fma(kv, vec4<f32>(win[s], win[s + 1u], win[s + 2u], win[s + 3u]),
                                  acc[2u * r]);
                acc[2u * r + 1u] = fma(kv, vec4<f32>(win[s + 4u], win[s + 5u], win[s + 6u],
                                                     win[s + 7u]), acc[2u * r + 1u]);
            }
        }
    }
    for (var r = 0u; r < DW_R; r++) {
        if (i0 + r < p.h) {
            let o = (pl * p.h + i0 + r) * q + js * 2u;
            dst4[o] = acc[2u * r];
            if (js * 2u + 1u < q) { dst4[o + 1u] = acc[2u * r + 1u]; }
        }
    }
}

// Kernel gradient, first pass. src is x, wt is dy (both (N, C, H, W)); dst is the
// partials (parts, C, K·K) with part = (n, row chunk, strip), a row chunk p.kh rows:
//   dst[part, c, a·K + b] = Σ_{(i, j) in part} dy[n, c, i, j] · x[n, c, i + a − K/2, j + b − K/2]
// Each invocation covers p.kh rows of one strip of 4 columns and keeps all K·K taps in
// registers. It walks the input rows under the chunk once: input row ii meets output row
// i = ii − a + K/2 through tap row a, so the strips of dy of the last K output rows are
// kept (g[a] that of row i0 + v − a at step v) and each loaded x window feeds K of them,
// instead of being loaded again for each output row. Rows outside the chunk or the map
// count as zeros; each tap still adds its rows in ascending order.
@compute @workgroup_size(256)
fn dw_conv_kgrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let strips = (p.w + TW - 1u) / TW;
    let rows = p.kh;
    let chunks = (p.h + rows - 1u) / rows;
    let js = t % strips;
    let rc = (t / strips) % chunks;
    let nc = t / (strips * chunks);
    let n = nc / p.c;
    let c = nc % p.c;
    let part = (n * chunks + rc) * strips + js;
    let j0 = js * TW;
    let plane = nc * p.h * p.w;
    let half = i32(K / 2u);
    // Columns of the strip past the right border carry no gradient.
    let live = vec4<f32>(vec4<bool>(j0 < p.w, j0 + 1u < p.w, j0 + 2u < p.w, j0 + 3u < p.w));
    var acc: array<f32, 25>;
    for (var q = 0u; q < K * K; q++) { acc[q] = 0.0; }
    var g: array<vec4<f32>, 5>;
    for (var a = 0u; a < K; a++) { g[a] = vec4<f32>(0.0); }
    let i0 = rc * rows;
    let i_end = min(p.h, i0 + rows);
    for (var v = 0u; v < i_end - i0 + K - 1u; v++) {
        // The dy strip of output row i0 + v enters; the oldest leaves.
        for (var a = 1u; a < K; a++) { g[K - a] = g[K - a - 1u]; }
        let i = i0 + v;
        if (i < i_end) {
            let o = plane + i * p.w;
            g[0] = live * vec4<f32>(
                wt[o + min(j0, p.w - 1u)], wt[o + min(j0 + 1u, p.w - 1u)],
                wt[o + min(j0 + 2u, p.w - 1u)], wt[o + min(j0 + 3u, p.w - 1u)]);
        } else {
            g[0] = vec4<f32>(0.0);
        }
        // Input row ii = i0 + v − K/2 under tap row a meets output row i0 + v − a: g[a].
        let ii = i32(i0 + v) - half;
        if (ii < 0 || ii >= i32(p.h)) { continue; }
        let row = plane + u32(ii) * p.w;
        var win: array<f32, 8>;
        for (var b = 0u; b < K + TW - 1u; b++) {
            win[b] = row_at(row, i32(j0 + b) - half);
        }
        for (var a = 0u; a < K; a++) {
            for (var b = 0u; b < K; b++) {
                acc[a * K + b] += dot(g[a], vec4<f32>(win[b], win[b + 1u], win[b + 2u], win[b + 3u]));
            }
        }
    }
    for (var q = 0u; q < K * K; q++) {
        dst[(part * p.c + c) * K * K + q] = acc[q];
    }
}

// dw_conv_kgrad with the rows read as vec4s, for W a multiple of 4 on CPU adapters: the
// dy strip of a row is one vec4 and the x window under it three (columns j0 − 4 …
// j0 + 7) where dw_conv_kgrad loads 4 + K + 3 scalars; on lavapipe every load costs about
// the same whatever its width. The same products, added in the same order.
@compute @workgroup_size(256)
fn dw_conv_kgrad4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let q = p.w / 4u;                        // strips: the vec4s of a row
    let rows = p.kh;
    let chunks = (p.h + rows - 1u) / rows;
    let js = t % q;
    let rc = (t / q) % chunks;
    let nc = t / (q * chunks);
    let n = nc / p.c;
    let c = nc % p.c;
    let part = (n * chunks + rc) * q + js;
    let plane = nc * p.h * q;
    let half = i32(K / 2u);
    var acc: array<f32, 25>;
    for (var tap = 0u; tap < K * K; tap++) { acc[tap] = 0.0; }
    var g: array<vec4<f32>, 5>;
    for (var a = 0u; a < K; a++) { g[a] = vec4<f32>(0.0); }
    let i0 = rc * rows;
    let i_end = min(p.h, i0 + rows);
    for (var v = 0u; v < i_end - i0 + K - 1u; v++) {
        for (var a = 1u; a < K; a++) { g[K - a] = g[K - a - 1u]; }
        let i = i0 + v;
        if (i < i_end) {
            g[0] = wt4[plane + i * q + js];
        } else {
            g[0] = vec4<f32>(0.0);
        }
        let ii = i32(i0 + v) - half;
        if (ii < 0 || ii >= i32(p.h)) { continue; }
        let row = plane + u32(ii) * q;
        var win: array<f32, 12>;
        for (var gq = 0; gq < 3; gq++) {
            let qq = i32(js) - 1 + gq;
            let inside = qq >= 0 && qq < i32(q);
            let x4 = select(vec4<f32>(0.0), src4[row + u32(clamp(qq, 0, i32(q) - 1))], inside);
            win[4 * gq] = x4.x;
            win[4 * gq + 1] = x4.y;
            win[4 * gq + 2] = x4.z;
            win[4 * gq + 3] = x4.w;
        }
        for (var a = 0u; a < K; a++) {
            for (var b = 0u; b < K; b++) {
                let s = 4u + b - u32(half);  // win index of column j0 + b − K/2
                acc[a * K + b] += dot(g[a], vec4<f32>(win[s], win[s + 1u], win[s + 2u], win[s + 3u]));
            }
        }
    }
    for (var tap = 0u; tap < K * K; tap++) {
        dst[(part * p.c + c) * K * K + tap] = acc[tap];
    }
}

// src is x (N, Cin, H, W); dst is col (N, Cin·kh·kw, Ho·Wo). One invocation per strip of
// 4 consecutive output columns of one col row: the index arithmetic (integer divisions,
// slow on CPU drivers) is paid once per 4 entries, and neighbours write neighbouring
// addresses.
@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let strips = (p.wo + TW - 1u) / TW;
    let taps = p.kh * p.kw;
    let oj0 = (t % strips) * TW;
    let u = t / strips;             // ((n·Cin + ci)·taps + tap)·Ho + oi
    let oi = u % p.ho;
    let v = u / p.ho;               // (n·Cin + ci)·taps + tap = n·R + r
    let tap = v % taps;
    let nci = v / taps;
    let a = tap / p.kw;
    let b = tap - a * p.kw;
    let ii = i32(oi * STRIDE + a) - i32(p.pad);
    let row_ok = ii >= 0 && ii < i32(p.h);
    let row = (nci * p.h + u32(clamp(ii, 0, i32(p.h) - 1))) * p.w;
    let o = v * p.ho * p.wo + oi * p.wo + oj0;
    for (var m = 0u; m < TW; m++) {
        if (oj0 + m < p.wo) {
            let jj = i32((oj0 + m) * STRIDE + b) - i32(p.pad);
            let inside = row_ok && jj >= 0 && jj < i32(p.w);
            dst[o + m] = select(0.0, src[row + u32(clamp(jj, 0, i32(p.w) - 1))], inside);
        }
    }
}

// im2col shaped for CPU adapters, for W and Wo multiples of 4: one invocation per
// (n·Cin + ci, oi, strip of 4 output columns) writes that strip of all kh·kw col rows as
// vec4s. Under each kernel row a it loads the aligned vec4s of the input row that cover
// the strip's columns for every b (zeros outside the map), and takes each output vec4
// from them at offset b + 4·⌈pad/4⌉ − pad, step STRIDE. Where im2col makes 4 scalar loads,
// 4 scalar stores and 5 integer divisions (per lane, on lavapipe) for each strip of each
// col row, this makes 2–3 vec4 loads per kernel row, one vec4 store per col row and 4
// divisions in all. In the 256², F 16 inference: 25–29 ms → 9–11 ms (12 dispatches; with
// the sizes read from the parameters instead of constants, the loops and the window's
// dynamic indices made it 43–46 ms). The caller checks that the window fits 16 columns:
// kw − 1 + 4·⌈pad/4⌉ − pad + 3·STRIDE ≤ 15 (the model's 3×3 stride 1 pad 1: 8; 2×2
// stride 2: 7). The kernel's size and padding are override constants (IM_KH, IM_KW,
// IM_PAD), so that the loops unroll and the window's offsets are constants.
override IM_KH: u32 = 3u;
override IM_KW: u32 = 3u;
override IM_PAD: u32 = 1u;

@compute @workgroup_size(256)
fn im2col4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let q = p.w / 4u;                    // vec4s per input row
    let qo = p.wo / 4u;                  // strips per output row
    let js = t % qo;
    let u = t / qo;
    let oi = u % p.ho;
    let nci = u / p.ho;                  // n·Cin + ci
    let pq = (IM_PAD + 3u) / 4u;         // whole vec4s of left padding
    let qb = i32(js * STRIDE) - i32(pq); // the window's first vec4: columns 4·js·STRIDE − 4·pq …
    let nq = (IM_KW - 1u + 4u * pq - IM_PAD + 3u * STRIDE) / 4u + 1u;
    let taps = IM_KH * IM_KW;
    let out = oi * qo + js;
    let rows_out = p.ho * qo;            // vec4s per col row
    for (var a = 0u; a < IM_KH; a++) {
        let ii = i32(oi * STRIDE + a) - i32(IM_PAD);
        let row_ok = ii >= 0 && ii < i32(p.h);
        let row = (nci * p.h + u32(clamp(ii, 0, i32(p.h) - 1))) * q;
        var win: array<f32, 16>;
        for (var g = 0u; g < nq; g++) {
            let qq = qb + i32(g);
            let inside = row_ok && qq >= 0 && qq < i32(q);
            let x4 = select(vec4<f32>(0.0), src4[row + u32(clamp(qq, 0, i32(q) - 1))], inside);
            win[4u * g] = x4.x;
            win[4u * g + 1u] = x4.y;
            win[4u * g + 2u] = x4.z;
            win[4u * g + 3u] = x4.w;
        }
        for (var b = 0u; b < IM_KW; b++) {
            let i0 = b + 4u * pq - IM_PAD;
            let v = vec4<f32>(win[i0], win[i0 + STRIDE], win[i0 + 2u * STRIDE], win[i0 + 3u * STRIDE]);
            dst4[(nci * taps + a * IM_KW + b) * rows_out + out] = v;
        }
    }
}

// Adjoint of im2col. src is dcol (N, Cin·kh·kw, Ho·Wo); dst is dx (N, Cin, H, W):
//   dx[n, ci, i, j] = Σ_{a, b : i + pad − a = oi·s, j + pad − b = oj·s, (oi, oj) in range}
//                     dcol[n, (ci, a, b), (oi, oj)]
// a gather, so overlapping windows (stride < kernel) need no atomics. One invocation per
// row strip of 4 dx pixels, which share the row tests of every tap row a. The kernel's size
// and padding are im2col4's override constants: with them read from the parameters its
// loops did not unroll (in a 256², F 16 training step on lavapipe, two alternated runs:
// 29 and 25 ms → 22 and 14 ms).
@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let strips = (p.w + TW - 1u) / TW;
    let j0 = (t % strips) * TW;
    let r = t / strips;             // (n·Cin + ci)·H + i
    let i = r % p.h;
    let nci = r / p.h;
    let np = p.ho * p.wo;
    let base = nci * IM_KH * IM_KW * np;
    var acc = vec4<f32>(0.0);
    for (var a = 0u; a < IM_KH; a++) {
        let di = i32(i + IM_PAD) - i32(a);
        if (di < 0 || u32(di) % STRIDE != 0u) { continue; }
        let oi = u32(di) / STRIDE;
        if (oi >= p.ho) { continue; }
        let rowbase = base + a * IM_KW * np + oi * p.wo;
        for (var b = 0u; b < IM_KW; b++) {
            let tapbase = rowbase + b * np;
            for (var m = 0u; m < TW; m++) {
                let dj = i32(j0 + m + IM_PAD) - i32(b);
                let oj = u32(max(dj, 0)) / STRIDE;
                let ok = dj >= 0 && u32(dj) % STRIDE == 0u && oj < p.wo;
                acc[m] += select(0.0, src[tapbase + min(oj, p.wo - 1u)], ok);
            }
        }
    }
    let o = r * p.w + j0;
    for (var m = 0u; m < TW; m++) {
        if (j0 + m < p.w) { dst[o + m] = acc[m]; }
    }
}

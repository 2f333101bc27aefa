// Max pooling 2×2 and nearest upsampling ×2, forward and backward. Every tensor is NCHW;
// a "plane" is one (n, c) map of H×W.
//
// - max_pool_valid: x (N, C, H, W) → y (N, C, H/2, W/2) (floor: an odd last row/column is
//   dropped), y[i, j] = max x[2i..2i+1, 2j..2j+1].
// - max_pool_same: x (N, C, H, W) → y (N, C, H, W), y[i, j] = max x[i..i+1, j..j+1], the
//   window clipped at the right and bottom borders (Keras 'same' pads only after).
// - upsample2x: x (N, C, H, W) → y (N, C, 2H, 2W), y[i, j] = x[i/2, j/2].
// The max-pool backwards route each output gradient to the first maximum of its window in
// row-major order, without atomics: stride-2 windows do not overlap (one invocation
// writes all of a window's pixels), and the stride-1 backward is a gather (each pixel
// sums over the windows that contain it).

struct Params {
    h: u32,       // input H, W
    w: u32,
    ho: u32,      // output H, W
    wo: u32,
    total: u32,   // invocations that do work
    shift: u32,   // the *4 entries: log2 of the vec4s of a row one workgroup covers
    pad1: u32,
    pad2: u32,
}

var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// Index within the plane of the first maximum of the 2×2 window at (r0, c0), clipped at
// the right/bottom border. Clipping repeats a candidate, and a repeat is never strictly
// greater, so the first maximum stays first.
fn window_argmax(plane: u32, r0: u32, c0: u32) -> u32 {
    let r1 = min(r0 + 1u, p.h - 1u);
    let c1 = min(c0 + 1u, p.w - 1u);
    let cand = array<u32, 4>(r0 * p.w + c0, r0 * p.w + c1, r1 * p.w + c0, r1 * p.w + c1);
    var best = cand[0];
    var bv = x[plane + best];
    for (var k = 1u; k < 4u; k++) {
        let v = x[plane + cand[k]];
        if (v > bv) { best = cand[k]; bv = v; }
    }
    return best;
}

fn window_max(plane: u32, r0: u32, c0: u32) -> f32 {
    let r1 = min(r0 + 1u, p.h - 1u);
    let c1 = min(c0 + 1u, p.w - 1u);
    return max(max(x[plane + r0 * p.w + c0], x[plane + r0 * p.w + c1]),
               max(x[plane + r1 * p.w + c0], x[plane + r1 * p.w + c1]));
}

// out is y (N, C, Ho, Wo), one invocation per output.
@compute @workgroup_size(256)
fn max_pool_valid(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let oj = t % p.wo;
    let oi = (t / p.wo) % p.ho;
    let nc = t / (p.wo * p.ho);
    out[t] = window_max(nc * p.h * p.w, 2u * oi, 2u * oj);
}

// y[i, j] = max x[2i..2i+1, 2j..2j+1]  ⇒  dx[u, v] = dy[u/2, v/2] if (u, v) is the first
// arg-max of its window, else 0 (also 0 in a dropped odd last row/column).
// out is dx (N, C, H, W); the windows do not overlap, so one invocation per window
// (⌈H/2⌉ × ⌈W/2⌉ of them, the extra ones zeroing a dropped row/column) writes all of its
// pixels and finds its arg-max once.
@compute @workgroup_size(256)
fn max_pool_valid_backward(@builtin(workgroup_id) wid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let wc = (p.w + 1u) / 2u;
    let hc = (p.h + 1u) / 2u;
    let oj = t % wc;
    let oi = (t / wc) % hc;
    let nc = t / (wc * hc);
    let plane = nc * p.h * p.w;
    let r0 = 2u * oi;
    let c0 = 2u * oj;
    var best = p.h * p.w;    // no pixel: a dropped window routes nothing
    var g = 0.0;
    if (oi < p.ho && oj < p.wo) {
        best = window_argmax(plane, r0, c0);
        g = dy[(nc * p.ho + oi) * p.wo + oj];
    }
    for (var r = r0; r < min(r0 + 2u, p.h); r++) {
        for (var c = c0; c < min(c0 + 2u, p.w); c++) {
            let at = r * p.w + c;
            out[plane + at] = select(0.0, g, at == best);
        }
    }
}

// out is y (N, C, H, W). One invocation per row strip of 4 outputs: the 2 × 5 inputs
// under the strip are loaded once (10 loads for 4 outputs instead of 16).
@compute @workgroup_size(256)
fn max_pool_same(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let strips = (p.w + 3u) / 4u;
    let j0 = (t % strips) * 4u;
    let r = t / strips;              // (n·C + c)·H + i
    let i = r % p.h;
    let top = r * p.w;
    // Next row, clamped at the bottom border (a repeat does not change a max).
    let bot = top + select(p.w, 0u, i + 1u == p.h);
    var m: array<f32, 5>;
    for (var k = 0u; k < 5u; k++) {
        let c = min(j0 + k, p.w - 1u);
        m[k] = max(x[top + c], x[bot + c]);
    }
    for (var k = 0u; k < 4u; k++) {
        if (j0 + k < p.w) { out[top + j0 + k] = max(m[k], m[k + 1u]); }
    }
}

// First maximum of (a, b, c, d), in that order: its index 0..3.
fn first_max(a: f32, b: f32, c: f32, d: f32) -> u32 {
    var k = 0u;
    var v = a;
    if (b > v) { k = 1u; v = b; }
    if (c > v) { k = 2u; v = c; }
    if (d > v) { k = 3u; }
    return k;
}

// y[i, j] = max x[i..i+1, j..j+1] (clipped)  ⇒  dx[u, v] = Σ dy[i, j] over the windows
// (i, j) ∈ {u−1, u} × {v−1, v} whose first arg-max is (u, v).
// out is dx (N, C, H, W). One invocation per row strip of 4 pixels (i, j0..j0+3): the
// windows that can route to them are the 2 × 5 at rows i−1, i and columns j0−1..j0+3,
// all inside the 3 × 6 patch of rows i−1..i+1 and columns j0−1..j0+4, loaded once with
// its rows and columns clamped into the map. A clamped row or column repeats the one
// before it, and a repeat is never strictly greater, so a clipped window keeps its first
// maximum; windows outside the map (row or column −1, column ≥ W) are skipped.
@compute @workgroup_size(256)
fn max_pool_same_backward(@builtin(workgroup_id) wid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let strips = (p.w + 3u) / 4u;
    let j0 = (t % strips) * 4u;
    let r = t / strips;              // (n·C + c)·H + i
    let i = r % p.h;
    let plane = (r - i) * p.w;
    let up = plane + (max(i, 1u) - 1u) * p.w;
    let mid = plane + i * p.w;
    let down = plane + min(i + 1u, p.h - 1u) * p.w;
    var xu: array<f32, 6>;
    var xm: array<f32, 6>;
    var xd: array<f32, 6>;
    for (var k = 0u; k < 6u; k++) {
        let c = u32(clamp(i32(j0 + k) - 1, 0, i32(p.w) - 1));
        xu[k] = x[up + c];
        xm[k] = x[mid + c];
        xd[k] = x[down + c];
    }
    var du: array<f32, 5>;
    var dm: array<f32, 5>;
    for (var k = 0u; k < 5u; k++) {
        let c = u32(clamp(i32(j0 + k) - 1, 0, i32(p.w) - 1));
        du[k] = dy[up + c];
        dm[k] = dy[mid + c];
    }
    let g = strip_gradient(xu, xm, xd, du, dm, j0, i);
    for (var m = 0u; m < 4u; m++) {
        if (j0 + m < p.w) { out[mid + j0 + m] = g[m]; }
    }
}

// The gradient of the strip of pixels (i, j0..j0+3) from the 3 × 6 patch of x at rows
// i−1..i+1, columns j0−1..j0+4 (clamped into the map) and the dy of the 2 × 5 windows at
// rows i−1, i and columns j0−1..j0+3 (du, dm; any value for a window outside the map).
fn strip_gradient(xu: array<f32, 6>, xm: array<f32, 6>, xd: array<f32, 6>,
                  du: array<f32, 5>, dm: array<f32, 5>, j0: u32, i: u32) -> vec4<f32> {
    // Window at column wj = j0 − 1 + k covers patch columns k, k + 1, i.e. strip pixels
    // k − 1 and k. For each: the first arg-max of the window at row i − 1 (fu: the strip
    // is its second row, candidates 2 and 3) and at row i (fm: first row, 0 and 1), 4 for
    // a window that does not exist. Straight-line code: no branch per window and no
    // indexing by a computed position.
    var fu: array<u32, 5>;
    var fm: array<u32, 5>;
    for (var k = 0u; k < 5u; k++) {
        let wj = i32(j0 + k) - 1;
        let exists = wj >= 0 && wj < i32(p.w);
        fu[k] = select(4u, first_max(xu[k], xu[k + 1u], xm[k], xm[k + 1u]), exists && i > 0u);
        fm[k] = select(4u, first_max(xm[k], xm[k + 1u], xd[k], xd[k + 1u]), exists);
    }
    // Pixel m of the strip is the second column of window k = m (candidates 3, 1) and the
    // first of window k = m + 1 (candidates 2, 0): summed in that order, as windows by k.
    var g: vec4<f32>;
    for (var m = 0u; m < 4u; m++) {
        var a = 0.0;
        a = select(a, a + du[m], fu[m] == 3u);
        a = select(a, a + dm[m], fm[m] == 1u);
        a = select(a, a + du[m + 1u], fu[m + 1u] == 2u);
        a = select(a, a + dm[m + 1u], fm[m + 1u] == 0u);
        g[m] = a;
    }
    return g;
}

// ---------------------------------------------------------------------------------------
// max_pool_same and its backward for W a multiple of 4: a strip is one aligned vec4 of a
// row, read and written as such (on lavapipe every load instruction costs about the same
// whatever its width), with scalar loads only for the columns just outside the strip.
// Forward: 2 vec4 + 2 scalar loads and 1 store per strip instead of 10 loads and 4 stores.
// A workgroup covers 64 vec4s of one row, or of 64/q whole rows where a row has q < 64
// vec4s (q a power of two: p.shift = log2 min(q, 64)); the grid is (⌈q/64⌉, row blocks,
// N·C). So no index is divided: lavapipe divides integers lane by lane, and two
// divisions cost as much as the rest of the forward.

@group(0) @binding(3) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out4: array<vec4<f32>>;

const WG4: u32 = 64u;

// (vec4 column, row) of this invocation within its plane.
fn strip_of(wid: vec3<u32>, lid: u32) -> vec2<u32> {
    let s = p.shift;
    let jq = wid.x * WG4 + (lid & ((1u << s) - 1u));
    let i = wid.y * (WG4 >> s) + (lid >> s);
    return vec2<u32>(jq, i);
}

/// Rows of max_pool_same4 per invocation (the grid's row blocks are POOL_R times taller):
/// each row it loads feeds two outputs, so a strip of POOL_R rows loads POOL_R + 1 rows
/// instead of 2·POOL_R.
override POOL_R: u32 = 1u;

@compute @workgroup_size(64)
fn max_pool_same4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let q = p.w / 4u;
    let at = strip_of(wid, lid);
    let jq = at.x;
    let i0 = at.y * POOL_R;
    if (jq >= q || i0 >= p.h) { return; }
    let plane = wid.z * p.h;         // the plane's first row: (n·C + c)·H
    // Column j0 + 4, clamped at the right border (a repeat does not change a max).
    let j4 = min(jq * 4u + 4u, p.w - 1u);
    var top = x4[(plane + i0) * q + jq];
    var top4 = x[(plane + i0) * p.w + j4];
    for (var r = 0u; r < POOL_R; r++) {
        let i = i0 + r;
        if (i >= p.h) { break; }
        // The row below, the last row's own at the bottom border.
        let below = plane + min(i + 1u, p.h - 1u);
        let bot = x4[below * q + jq];
        let bot4 = x[below * p.w + j4];
        let m = max(top, bot);
        out4[(plane + i) * q + jq] = max(m, vec4<f32>(m.y, m.z, m.w, max(top4, bot4)));
        top = bot;
        top4 = bot4;
    }
}

// The columns j0 − 1 … j0 + 4 of x's plane row `row` (clamped at the borders), and the
// columns j0 − 1 … j0 + 3 of dy's.
fn x_window(row: u32, jq: u32, left: u32, right: u32) -> array<f32, 6> {
    let v = x4[row * (p.w / 4u) + jq];
    return array<f32, 6>(x[row * p.w + left], v.x, v.y, v.z, v.w, x[row * p.w + right]);
}

fn dy_window(row: u32, jq: u32, left: u32) -> array<f32, 5> {
    let g = dy4[row * (p.w / 4u) + jq];
    return array<f32, 5>(dy[row * p.w + left], g.x, g.y, g.z, g.w);
}

// A strip of POOL_R rows per invocation, as max_pool_same4: row i needs x's rows i − 1, i,
// i + 1 and dy's rows i − 1, i, and the next row reuses all but one of each. Loads per
// row: one row of x as a vec4 and 2 scalars, one of dy as a vec4 and 1 (for a strip's
// first row 3 and 2 of them).
@compute @workgroup_size(64)
fn max_pool_same_backward4(@builtin(workgroup_id) wid: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let q = p.w / 4u;
    let at = strip_of(wid, lid);
    let jq = at.x;
    let i0 = at.y * POOL_R;
    if (jq >= q || i0 >= p.h) { return; }
    let j0 = jq * 4u;
    let plane = wid.z * p.h;         // the plane's first row
    let left = max(j0, 1u) - 1u;
    let right = min(j0 + 4u, p.w - 1u);
    let up = plane + max(i0, 1u) - 1u;
    var xu = x_window(up, jq, left, right);
    var xm = x_window(plane + i0, jq, left, right);
    var xd = x_window(plane + min(i0 + 1u, p.h - 1u), jq, left, right);
    var du = dy_window(up, jq, left);
    var dm = dy_window(plane + i0, jq, left);
    for (var r = 0u; r < POOL_R; r++) {
        let i = i0 + r;
        if (i >= p.h) { break; }
        if (r > 0u) {
            xu = xm;
            xm = xd;
            xd = x_window(plane + min(i + 1u, p.h - 1u), jq, left, right);
            du = dm;
            dm = dy_window(plane + i, jq, left);
        }
        out4[(plane + i) * q + jq] = strip_gradient(xu, xm, xd, du, dm, j0, i);
    }
}

// The same bindings seen as pairs: rows of the upsampled map have even length 2W and
// every 2×2 block starts at an even column, so each block row is one aligned vec2.
@group(0) @binding(1) var<storage, read> dy2: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> out2: array<vec2<f32>>;

// out is y (N, C, 2H, 2W); one invocation per input pixel writes its 2×2 block.
@compute @workgroup_size(256)
fn upsample2x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let j = t % p.w;
    let r = t / p.w;                 // (n·C + c)·H + i
    let v = vec2<f32>(x[t]);
    // Block top-left at row 2r of the (N·C·2H, 2W) view, column 2j: pair index r·2W + j.
    let o = 2u * r * p.w + j;
    out2[o] = v;
    out2[o + p.w] = v;
}

// y[i, j] = x[i/2, j/2]  ⇒  dx[u, v] = Σ dy[2u..2u+1, 2v..2v+1].
// out is dx (N, C, H, W), one invocation per input pixel.
@compute @workgroup_size(256)
fn upsample2x_backward(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let j = t % p.w;
    let r = t / p.w;
    let o = 2u * r * p.w + j;
    let s = dy2[o] + dy2[o + p.w];
    out[t] = s.x + s.y;
}

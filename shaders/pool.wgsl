// Max pooling 2×2 and nearest upsampling ×2, forward and backward. Every tensor is NCHW;
// a "plane" is one (n, c) map of H×W.
//
// - max_pool_valid: x (N, C, H, W) → y (N, C, H/2, W/2) (floor: an odd last row/column is
//   dropped), y[i, j] = max x[2i..2i+1, 2j..2j+1].
// - max_pool_same: x (N, C, H, W) → y (N, C, H, W), y[i, j] = max x[i..i+1, j..j+1], the
//   window clipped at the right and bottom borders (Keras 'same' pads only after).
// - upsample2x: x (N, C, H, W) → y (N, C, 2H, 2W), y[i, j] = x[i/2, j/2].
// The max-pool backwards route each output gradient to the first maximum of its window in
// row-major order, as gathers (one invocation per input pixel over the windows that
// contain it), so overlapping stride-1 windows need no atomics.

struct Params {
    h: u32,       // input H, W
    w: u32,
    ho: u32,      // output H, W
    wo: u32,
    total: u32,   // invocations that do work
    pad0: u32,
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
// out is dx (N, C, H, W), one invocation per input pixel.
@compute @workgroup_size(256)
fn max_pool_valid_backward(@builtin(workgroup_id) wid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let j = t % p.w;
    let i = (t / p.w) % p.h;
    let nc = t / (p.w * p.h);
    let oi = i / 2u;
    let oj = j / 2u;
    var g = 0.0;
    if (oi < p.ho && oj < p.wo && window_argmax(nc * p.h * p.w, 2u * oi, 2u * oj) == i * p.w + j) {
        g = dy[(nc * p.ho + oi) * p.wo + oj];
    }
    out[t] = g;
}

// out is y (N, C, H, W), one invocation per output.
@compute @workgroup_size(256)
fn max_pool_same(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let j = t % p.w;
    let i = (t / p.w) % p.h;
    let nc = t / (p.w * p.h);
    out[t] = window_max(nc * p.h * p.w, i, j);
}

// y[i, j] = max x[i..i+1, j..j+1] (clipped)  ⇒  dx[u, v] = Σ dy[i, j] over the windows
// (i, j) ∈ {u−1, u} × {v−1, v} whose first arg-max is (u, v).
// out is dx (N, C, H, W), one invocation per input pixel.
@compute @workgroup_size(256)
fn max_pool_same_backward(@builtin(workgroup_id) wid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let j = t % p.w;
    let i = (t / p.w) % p.h;
    let plane = (t / (p.w * p.h)) * p.h * p.w;
    let me = i * p.w + j;
    var g = 0.0;
    for (var wi = max(i, 1u) - 1u; wi <= i; wi++) {
        for (var wj = max(j, 1u) - 1u; wj <= j; wj++) {
            if (window_argmax(plane, wi, wj) == me) {
                g += dy[plane + wi * p.w + wj];
            }
        }
    }
    out[t] = g;
}

// out is y (N, C, 2H, 2W); one invocation per input pixel writes its 2×2 block.
@compute @workgroup_size(256)
fn upsample2x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = flat(wid, nwg, lid);
    if (t >= p.total) { return; }
    let j = t % p.w;
    let i = (t / p.w) % p.h;
    let nc = t / (p.w * p.h);
    let v = x[t];
    let o = (nc * 2u * p.h + 2u * i) * 2u * p.w + 2u * j;
    out[o] = v;
    out[o + 1u] = v;
    out[o + 2u * p.w] = v;
    out[o + 2u * p.w + 1u] = v;
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
    let i = (t / p.w) % p.h;
    let nc = t / (p.w * p.h);
    let o = (nc * 2u * p.h + 2u * i) * 2u * p.w + 2u * j;
    out[t] = (dy[o] + dy[o + 1u]) + (dy[o + 2u * p.w] + dy[o + 2u * p.w + 1u]);
}

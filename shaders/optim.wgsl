// Adam, one kernel over a flat f32 buffer, updating param, m and v in place.
//
// param, grad, m, v are (len) with the same layout. Keras' form (MODEL.md: β 0.9/0.999,
// ε 1e-7), with the bias correction folded into the step size:
//   m ← β1·m + (1 − β1)·g
//   v ← β2·v + (1 − β2)·g²
//   lr_t = lr·√(1 − β2^t)/(1 − β1^t)
//   param ← param − lr_t·m/(√v + ε)
// t and lr arrive as immediates, so a learning-rate schedule never recompiles.

struct Params {
    len: u32,
    step: u32,     // t ≥ 1
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    first: u32,    // adam: the first element it updates (the tail after adam4's vec4s)
    pad1: u32,
}

var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;

const WG: u32 = 256u;
// Elements per invocation: the bias correction below is computed once per invocation.
const PER: u32 = 4u;

// b^t by repeated squaring: exact to a few ulp, where pow(b, t) = exp2(t·log2 b) may be
// a hardware approximation whose error 1 − β2^t (≈ 1e-3 at t = 1) would magnify.
fn powu(b: f32, t: u32) -> f32 {
    var r = 1.0;
    var x = b;
    var e = t;
    loop {
        if (e == 0u) { break; }
        if ((e & 1u) != 0u) { r *= x; }
        x *= x;
        e >>= 1u;
    }
    return r;
}

/// The step size at step t, with the bias correction folded in.
fn step_size() -> f32 {
    return p.lr * sqrt(1.0 - powu(p.beta2, p.step)) / (1.0 - powu(p.beta1, p.step));
}

/// One update of up to four elements: (m, v, param) after it, from the gradient g, the
/// moments m and v and the parameters w before it.
fn update(g: vec4<f32>, m0: vec4<f32>, v0: vec4<f32>, w: vec4<f32>, lr_t: f32) -> array<vec4<f32>, 3> {
    let mi = p.beta1 * m0 + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v0 + (1.0 - p.beta2) * g * g;
    return array<vec4<f32>, 3>(mi, vi, w - lr_t * mi / (sqrt(vi) + p.eps));
}

// One invocation per PER elements, 256·PER contiguous elements per workgroup, on a
// 2-D grid of workgroups (see runtime::grid_1d).
@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = p.first + (wid.y * nwg.x + wid.x) * (WG * PER) + lid;
    if (i0 >= p.len) { return; }
    let lr_t = step_size();
    for (var j = 0u; j < PER; j++) {
        let i = i0 + j * WG;
        if (i < p.len) {
            let u = update(vec4<f32>(grad[i]), vec4<f32>(m[i]), vec4<f32>(v[i]),
                           vec4<f32>(param[i]), lr_t);
            m[i] = u[0].x;
            v[i] = u[1].x;
            param[i] = u[2].x;
        }
    }
}

// The same buffers as vec4s, for adam4.
@group(0) @binding(4) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> v4: array<vec4<f32>>;

// adam over the whole vec4s of the buffers (p.len counts vec4s; the caller runs adam on
// the 1–3 elements after them): the same arithmetic per element, but on lavapipe, where a
// load or store is a loop over the 8 lanes with a bounds check per component, one vec4
// access where adam makes four.
@compute @workgroup_size(256)
fn adam4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i0 = (wid.y * nwg.x + wid.x) * (WG * PER) + lid;
    if (i0 >= p.len) { return; }
    let lr_t = step_size();
    for (var j = 0u; j < PER; j++) {
        let i = i0 + j * WG;
        if (i < p.len) {
            let u = update(grad4[i], m4[i], v4[i], param4[i], lr_t);
            m4[i] = u[0];
            v4[i] = u[1];
            param4[i] = u[2];
        }
    }
}

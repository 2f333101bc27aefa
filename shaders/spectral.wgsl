// Spectral pooling at full size (h = M) in closed form, for planes whose side M is a
// multiple of 4 (`src/ops/spectral.rs`).
//
// With h = M the crop keeps every bin and only scales the Nyquist row and column of the
// spectrum by √2, so along each axis the operator is A = I + c·v·vᵀ, v[n] = (−1)^n,
// c = (√2 − 1)/M, and y = A·x·Aᵀ is
//   y[i, j] = x[i, j] + c·(−1)^i·r[j] + c·(−1)^j·s[i] + c²·(−1)^(i+j)·t,
//   r[j] = Σ_k (−1)^k x[k, j],  s[i] = Σ_k (−1)^k x[i, k],  t = Σ_j (−1)^j r[j].
// A is symmetric, so the backward (Aᵀ·dy·A) is the same map on dy.
//
// Two kernels: full_sums reduces each plane to (r, s, t), one workgroup per plane;
// full_apply writes y, one invocation per vec4 of a row. x and y are (planes, M, M),
// read and written as vec4 along rows; sums is (planes, 2M + 4): r, then s, then t and
// three zeros.

struct Params {
    planes: u32,  // N·C
    m: u32,       // plane side M, a multiple of 4
    c: f32,       // (√2 − 1)/M
    total: u32,   // full_apply: invocations, planes·M·M/4 / FA_V
}

var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> sums: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> sums_in: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

const SWG: u32 = 64u;
const WG: u32 = 256u;
const ALT: vec4<f32> = vec4<f32>(1.0, -1.0, 1.0, -1.0);

var<workgroup> partial: array<f32, SWG>;

// One workgroup per plane. Invocation l sums the vec4 columns g = l, l + 64, … down the
// rows (r[4g..4g+3]), then the rows 4g..4g+3 along their vec4s (s[4g..4g+3]); t is the
// alternating sum of r, reduced through workgroup memory.
@compute @workgroup_size(64)
fn full_sums(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let plane = wid.y * nwg.x + wid.x;
    // The whole workgroup leaves together, before any barrier.
    if (plane >= p.planes) { return; }
    let q = p.m / 4u;
    let base = plane * p.m * q;
    let sb = plane * (2u * q + 1u);
    var tpart = 0.0;
    for (var g = lid; g < q; g += SWG) {
        var acc = vec4<f32>(0.0);
        for (var k = 0u; k < p.m; k += 2u) {
            acc += x[base + k * q + g] - x[base + (k + 1u) * q + g];
        }
        sums[sb + g] = acc;
        tpart += dot(acc, ALT);
    }
    for (var g = lid; g < q; g += SWG) {
        let r0 = base + 4u * g * q;
        var acc = vec4<f32>(0.0);
        for (var k = 0u; k < q; k++) {
            acc += vec4<f32>(dot(x[r0 + k], ALT), dot(x[r0 + q + k], ALT),
                             dot(x[r0 + 2u * q + k], ALT), dot(x[r0 + 3u * q + k], ALT));
        }
        sums[sb + q + g] = acc;
    }
    partial[lid] = tpart;
    workgroupBarrier();
    if (lid == 0u) {
        var t = 0.0;
        for (var l = 0u; l < SWG; l++) { t += partial[l]; }
        sums[sb + 2u * q] = vec4<f32>(t, 0.0, 0.0, 0.0);
    }
}

/// Store max(0, ·): the ReLU after the hybrid pools' spectral branch, in inference.
override RELU: bool = false;

/// vec4s of y per invocation of full_apply, consecutive along a row (1, or 4 where a row
/// is whole groups of 4 vec4s: its row sum and t are then loaded once for the four, and
/// on lavapipe, where every load is a loop over the 8 lanes, an invocation's fixed costs
/// are shared by four; 1 for small models, whose first inference is mostly compilation).
override FA_V: u32 = 1u;

// One invocation per FA_V vec4s of y: the vec4s g0 … g0 + FA_V − 1 of row i of a plane.
@compute @workgroup_size(256)
fn full_apply(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t_inv = (wid.y * nwg.x + wid.x) * WG + lid;
    if (t_inv >= p.total) { return; }
    let e0 = t_inv * FA_V;
    let q = p.m / 4u;
    let g0 = e0 % q;
    let row = e0 / q;
    let i = row % p.m;
    let plane = row / p.m;
    let sb = plane * (2u * q + 1u);
    let si = sums_in[sb + q + i / 4u][i % 4u];
    let t = sums_in[sb + 2u * q].x;
    let sgn = select(1.0, -1.0, (i & 1u) == 1u);
    for (var j = 0u; j < FA_V; j++) {
        let e = e0 + j;
        let v = x[e] + p.c * (sgn * sums_in[sb + g0 + j] + si * ALT) + (p.c * p.c * sgn * t) * ALT;
        if (RELU) {
            out[e] = max(v, vec4<f32>(0.0));
        } else {
            out[e] = v;
        }
    }
}

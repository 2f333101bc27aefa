// Element-wise kernels, their backward rules, and the channel copies behind concat.
//
// Every tensor is a flat f32 array; an NCHW tensor is viewed as (outer, C, inner) with
// inner = H·W. One invocation per output element, 256 per workgroup, on a 2-D grid of
// workgroups (x wraps at the device's per-dimension limit; see runtime::grid_1d).

struct Params {
    n: u32,      // elements to write
    c: u32,      // channels C of the (outer, C, inner) view
    inner: u32,  // H·W
    x0: u32,     // per-kernel extras (channel offsets and totals of copy_channels)
    x1: u32,
    x2: u32,
    x3: u32,
    s: f32,      // scalar operand (fill value, scale factor)
}

var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// out[i] = s
@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = p.s;
}

// out = a + b, same shapes
@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = a[i] + b[i];
}

// out = a * b, same shapes
@compute @workgroup_size(256)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = a[i] * b[i];
}

// a is (N, C, P), b is (N, 1, P): out[n, c, q] = a[n, c, q] * b[n, q]
@compute @workgroup_size(256)
fn mul_bcast(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let n = i / (p.c * p.inner);
    let q = i % p.inner;
    out[i] = a[i] * b[n * p.inner + q];
}

// Backward of mul_bcast for the broadcast operand. a is (N, C, P) (the other factor),
// b is dy (N, C, P); out is (N, 1, P): out[n, q] = sum_c dy[n, c, q] * a[n, c, q]
@compute @workgroup_size(256)
fn mul_bcast_grad_b(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let n = i / p.inner;
    let q = i % p.inner;
    var acc = 0.0;
    var j = n * p.c * p.inner + q;
    for (var c = 0u; c < p.c; c++) {
        acc += a[j] * b[j];
        j += p.inner;
    }
    out[i] = acc;
}

// out = s * a
@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = p.s * a[i];
}

// out = max(a, 0)
@compute @workgroup_size(256)
fn relu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = max(a[i], 0.0);
}

// Backward of relu: a is the forward input x, b is dy: dx = dy where x > 0, else 0
@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = select(0.0, b[i], a[i] > 0.0);
}

// out = 1 / (1 + exp(-a)), written so that exp never overflows
@compute @workgroup_size(256)
fn sigmoid(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let x = a[i];
    let e = exp(-abs(x));
    out[i] = select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}

// Backward of sigmoid: a is the forward output y, b is dy: dx = dy * y * (1 - y)
@compute @workgroup_size(256)
fn sigmoid_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let y = a[i];
    out[i] = b[i] * y * (1.0 - y);
}

// Backward of a per-channel (or whole) sum: a is dy (C), out is (outer, C, inner):
// out[o, c, q] = s * dy[c]
@compute @workgroup_size(256)
fn broadcast_channel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let c = (i / p.inner) % p.c;
    out[i] = p.s * a[c];
}

// Copy a block of channels: a is (outer, x0, inner) and its channels x1 .. x1 + c go to
// channels x3 .. x3 + c of out, (outer, x2, inner). Concat is one launch per input; its
// backward (split) is one launch per input the other way round.
@compute @workgroup_size(256)
fn copy_channels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, nwg, lid);
    if (i >= p.n) { return; }
    let block = p.c * p.inner;
    let o = i / block;
    let r = i % block;
    let c = r / p.inner;
    let q = r % p.inner;
    out[(o * p.x2 + p.x3 + c) * p.inner + q] = a[(o * p.x0 + p.x1 + c) * p.inner + q];
}

// copy_channels for blocks of whole vec4s (inner % 4 == 0): 4 consecutive elements per
// invocation, and the outer index from the grid's z instead of a division (lavapipe has no
// vector integer division, so the scalar form's two divisions and two remainders per
// element cost more than the copy). p.n is the block's vec4 count, c·inner/4.
@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn copy_channels4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let r = (wid.y * nwg.x + wid.x) * WG + lid;
    if (r >= p.n) { return; }
    let o = wid.z;
    let q4 = p.inner / 4u;
    out4[(o * p.x2 + p.x3) * q4 + r] = a4[(o * p.x0 + p.x1) * q4 + r];
}

// ---------------------------------------------------------------------------------------
// The simple maps over whole vec4s (n % 4 == 0; p.n counts vec4s): V4 consecutive vec4s
// (16 elements) per invocation, so a sixteenth of the invocations and a fourth of the load
// instructions, which is what a CPU adapter pays for. Each is its scalar entry's formula,
// component-wise. One vec4 per invocation ran at 2.6 GB/s on lavapipe (relu over 4 MiB,
// Mesa 25.0.7, 2 cores), 2, 4, 8 and 16 at 3.0, 3.3, 3.2 and 2.9 GB/s: the per-invocation
// work (index, bounds test, llvmpipe's per-lane set-up) is then spread over more loads.

/// vec4s per invocation of the vec4 maps (`tensor::V4_PER` on the host; 1 for small
/// models, whose first inference is mostly compilation: `Gpu::set_few_pipelines`).
override V4: u32 = 4u;

@group(0) @binding(1) var<storage, read> b4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn fill4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i0 = flat(wid, nwg, lid) * V4;
    for (var j = 0u; j < V4; j++) {
        let i = i0 + j;
        if (i < p.n) { out4[i] = vec4<f32>(p.s); }
    }
}

@compute @workgroup_size(256)
fn add4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = flat(wid, nwg, lid) * V4;
    for (var j = 0u; j < V4; j++) {
        let i = i0 + j;
        if (i < p.n) { out4[i] = a4[i] + b4[i]; }
    }
}

// The sum of TERMS (3 to 7) tensors of whole vec4s in one pass, added left to right as a
// chain of `add4`s would: ((a + b) + t3) + …. Back-propagation sums a tensor's gradient
// contributions with it (`autodiff`): one dispatch and one pass instead of TERMS − 1 of
// each (on lavapipe a dispatch costs ~40 µs before any work).
@group(0) @binding(3) var<storage, read> t3: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> t4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> t5: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> t6: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> t7: array<vec4<f32>>;

override TERMS: u32 = 3u;

@compute @workgroup_size(256)
fn add_many4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i0 = flat(wid, nwg, lid) * V4;
    for (var j = 0u; j < V4; j++) {
        let i = i0 + j;
        if (i < p.n) {
            var s = a4[i] + b4[i];
            s += t3[i];
            if (TERMS > 3u) { s += t4[i]; }
            if (TERMS > 4u) { s += t5[i]; }
            if (TERMS > 5u) { s += t6[i]; }
            if (TERMS > 6u) { s += t7[i]; }
            out4[i] = s;
        }
    }
}

@compute @workgroup_size(256)
fn mul4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = flat(wid, nwg, lid) * V4;
    for (var j = 0u; j < V4; j++) {
        let i = i0 + j;
        if (i < p.n) { out4[i] = a4[i] * b4[i]; }
    }
}

@compute @workgroup_size(256)
fn scale4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i0 = flat(wid, nwg, lid) * V4;
    for (var j = 0u; j < V4; j++) {
        let i = i0 + j;
        if (i < p.n) { out4[i] = p.s * a4[i]; }
    }
}

@compute @workgroup_size(256)
fn relu4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i0 = flat(wid, nwg, lid) * V4;
    for (var j = 0u; j < V4; j++) {
        let i = i0 + j;
        if (i < p.n) { out4[i] = max(a4[i], vec4<f32>(0.0)); }
    }
}

// mul_bcast and mul_bcast_grad_b over whole vec4s (inner % 4 == 0; p.inner counts vec4s),
// 64 invocations per workgroup along a row, the channel and the sample from the grid
// (⌈inner/64⌉, C, N) instead of two integer divisions per element (lavapipe divides lane by
// lane). mul_bcast4: out = a ⊙ b, a (N, C, P), b (N, 1, P).
const RW: u32 = 64u;

@compute @workgroup_size(64)
fn mul_bcast4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let q = wid.x * RW + lid;
    if (q >= p.inner) { return; }
    let n = wid.z;
    let i = (n * p.c + wid.y) * p.inner + q;
    out4[i] = a4[i] * b4[n * p.inner + q];
}

// out[n, q] = Σ_c a[n, c, q]·b[n, c, q] on the grid (⌈inner/64⌉, N, 1), channels in order.
@compute @workgroup_size(64)
fn mul_bcast_grad_b4(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let q = wid.x * RW + lid;
    if (q >= p.inner) { return; }
    let n = wid.y;
    var acc = vec4<f32>(0.0);
    var j = n * p.c * p.inner + q;
    for (var c = 0u; c < p.c; c++) {
        acc += a4[j] * b4[j];
        j += p.inner;
    }
    out4[n * p.inner + q] = acc;
}

@compute @workgroup_size(256)
fn relu_backward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i0 = flat(wid, nwg, lid) * V4;
    for (var j = 0u; j < V4; j++) {
        let i = i0 + j;
        if (i < p.n) { out4[i] = select(vec4<f32>(0.0), b4[i], a4[i] > vec4<f32>(0.0)); }
    }
}

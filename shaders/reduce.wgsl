// Sums. A tensor is viewed as (outer, C, inner); sum_partial adds, for each channel c,
// the outer·inner elements of that channel, split in chunks of `chunk` elements, one
// workgroup per (chunk, channel). A second pass over the partials finishes the sum:
// whole-tensor sums use C = 1, per-channel sums of NCHW use (N, C, H·W), per-sample sums
// use (1, N, C·H·W).

struct Params {
    outer: u32,
    c: u32,
    inner: u32,
    chunk: u32,    // elements per workgroup
    nchunks: u32,  // workgroups per channel (= partial results per channel)
    s: f32,        // scale applied to the result (1/count for a mean)
    // sum_outer only: where sum i lands (see `dst_index`); dst_cols = 0 for out[i].
    dst_cols: u32,
    dst_stride: u32,
    dst_off: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;  // x as vec4s (sum_rows4)

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

// x is (outer, C, inner); out is (C, nchunks): out[c, k] = s * sum of chunk k of channel c
@compute @workgroup_size(256)
fn sum_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k = wid.x;
    let c = wid.y;
    let total = p.outer * p.inner;
    let begin = k * p.chunk;
    let end = min(total, begin + p.chunk);
    var acc = 0.0;
    for (var j = begin + lid; j < end; j += WG) {
        let o = j / p.inner;
        let q = j - o * p.inner;
        acc += x[(o * p.c + c) * p.inner + q];
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var width = WG / 2u; width > 0u; width /= 2u) {
        if (lid < width) {
            partial[lid] += partial[lid + width];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[c * p.nchunks + k] = p.s * partial[0];
    }
}

// The same sums when inner is a multiple of 4, without a division per element: one
// 64-invocation workgroup per (chunk k, row o, channel c) reads `chunk` consecutive
// elements of the contiguous row (o, c) as vec4s. out is (C, outer·nchunks):
// out[c, o·nchunks + k] = s * sum of chunk k of row (o, c).
const RWG: u32 = 64u;
var<workgroup> rpartial: array<f32, RWG>;

@compute @workgroup_size(64)
fn sum_rows4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k = wid.x;
    let o = wid.y;
    let c = wid.z;
    let row = (o * p.c + c) * (p.inner / 4u);
    let begin = k * (p.chunk / 4u);
    let end = min(p.inner / 4u, begin + p.chunk / 4u);
    var acc = vec4<f32>(0.0);
    for (var j = begin + lid; j < end; j += RWG) {
        acc += x4[row + j];
    }
    rpartial[lid] = (acc.x + acc.y) + (acc.z + acc.w);
    workgroupBarrier();
    for (var width = RWG / 2u; width > 0u; width /= 2u) {
        if (lid < width) {
            rpartial[lid] += rpartial[lid + width];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[(c * p.outer + o) * p.nchunks + k] = p.s * rpartial[0];
    }
}

// Where sum i of sum_outer lands: out[i], or, for a matrix of dst_cols columns written
// as a block of a wider row-major matrix (dst_stride columns, the block from column
// dst_off), its row i / dst_cols at column dst_off + i % dst_cols.
fn dst_index(i: u32) -> u32 {
    if (p.dst_cols == 0u) { return i; }
    return (i / p.dst_cols) * p.dst_stride + p.dst_off + i % p.dst_cols;
}

// x is (outer, c) (c = length of each row here); out is (c): out[i] = s * sum_o x[o, i].
// Used for the split-K and per-sample partial products of the matmul.
@compute @workgroup_size(256)
fn sum_outer(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.c) { return; }
    var acc = 0.0;
    for (var o = 0u; o < p.outer; o++) {
        acc += x[o * p.c + i];
    }
    out[dst_index(i)] = p.s * acc;
}

// Small sums without a workgroup reduction: one invocation per channel adds the
// outer·inner elements of its channel (x viewed as (outer, C, inner)) in order;
// out[c] = s * sum. On lavapipe a barrier is a coroutine switch per group of 8 lanes, so
// the 8 barriers of `sum_partial`'s tree cost more than a few thousand additions (the
// second pass over 4–16 partials of 64 channels took 0.4 ms).
@compute @workgroup_size(256)
fn sum_serial(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    var acc = 0.0;
    for (var o = 0u; o < p.outer; o++) {
        let row = (o * p.c + c) * p.inner;
        for (var j = 0u; j < p.inner; j++) {
            acc += x[row + j];
        }
    }
    out[c] = p.s * acc;
}

// `sum_serial` reading the rows as vec4s (inner a multiple of 4).
@compute @workgroup_size(256)
fn sum_serial4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    let n4 = p.inner / 4u;
    var acc = vec4<f32>(0.0);
    for (var o = 0u; o < p.outer; o++) {
        let row = (o * p.c + c) * n4;
        for (var j = 0u; j < n4; j++) {
            acc += x4[row + j];
        }
    }
    out[c] = p.s * ((acc.x + acc.y) + (acc.z + acc.w));
}

// Per-channel sums on CPU adapters where each channel is too large for one invocation
// (inner a multiple of 4): one 64-invocation workgroup per channel (grid (1, C, 1)) sums
// all of it, so that the sum is one dispatch, not sum_rows4 and a second pass over its
// partials (on lavapipe a dispatch costs ~40 µs before any work; a workgroup runs on one
// thread anyway). Each row (o, c) is summed on its own before it is added to the
// channel's sum. out[c] = s * sum.
@compute @workgroup_size(64)
fn sum_channels_cpu4(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let c = wid.y;
    let n4 = p.inner / 4u;
    var acc = vec4<f32>(0.0);
    for (var o = 0u; o < p.outer; o++) {
        let row = (o * p.c + c) * n4;
        var r = vec4<f32>(0.0);
        for (var j = lid; j < n4; j += RWG) {
            r += x4[row + j];
        }
        acc += r;
    }
    rpartial[lid] = (acc.x + acc.y) + (acc.z + acc.w);
    workgroupBarrier();
    if (lid < 8u) {
        var t = rpartial[lid];
        for (var k = 1u; k < 8u; k++) {
            t += rpartial[lid + 8u * k];
        }
        rpartial[lid] = t;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var t = 0.0;
        for (var k = 0u; k < 8u; k++) {
            t += rpartial[k];
        }
        out[c] = p.s * t;
    }
}

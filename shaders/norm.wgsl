// Batch normalisation over (N, H, W) per channel, forward and backward.
//
// x and dy are (N, C, P) with P = H·W; gamma, beta, running statistics are (C); stats is
// (C, 2) = [mean, invstd] per channel, the only thing the apply and backward kernels need
// besides x. Per-channel sums use two passes without atomics: the *_partial kernels give
// one workgroup a tile of one channel, the *_final kernels merge a channel's partials
// with one invocation per channel.
//
// A tile is `qspan` pixels (a multiple of 256) of `spw` consecutive samples' planes of one
// channel; the grid is (nq, C, ns) with nq = ceil(P / qspan), ns = ceil(N / spw). Large
// planes are split (spw = 1), small ones are grouped (qspan covers the plane, spw > 1):
// a 16×16 plane per workgroup would mean thousands of tiny workgroups. No element index
// is ever divided.
//
// Where P is a multiple of 4 (every plane of the model at input sizes that are multiples
// of 32) the *4 entry points run instead: the same kernels on vec4s of 4 consecutive
// pixels, with `inner` and `qspan` counted in vec4s and 64 invocations per workgroup (256
// pixels, like the scalar ones). On lavapipe a load or store costs about the same per lane
// whatever its width, so a vec4 moves 4 pixels for the price of one (measured:
// `cargo bench --bench kernels -- batch_norm`, docs/benchmarks.md).
//
// Backward with MASK: the ReLU that bn_apply fused is differentiated here too, from its
// output y (slot `*y`): dy passes where y > 0. One pass over the data instead of two.

struct Params {
    c: u32,        // channels
    inner: u32,    // P = H·W
    qspan: u32,    // pixels of a plane per tile
    nq: u32,       // tiles along a plane
    n: u32,        // batch
    spw: u32,      // samples per tile
    ns: u32,       // tiles along the batch
    train: u32,    // bn_backward_input: 1 for batch statistics, 0 for running ones
    eps: f32,
    momentum: f32,
}

var<immediate> p: Params;

const WG: u32 = 256u;

var<workgroup> acc2: array<vec2<f32>, WG>;

// Sum of acc2[0 .. side²] over a workgroup of side² invocations, valid in lid 0. Two
// barriers, not a log2 tree: barriers dominate small reductions on lavapipe, and `side`
// serial adds by `side` lanes are nothing on any device.
fn reduce_acc2(lid: u32, side: u32) -> vec2<f32> {
    workgroupBarrier();
    if (lid < side) {
        var s = acc2[lid];
        for (var k = 1u; k < side; k++) {
            s += acc2[lid + side * k];
        }
        acc2[lid] = s;
    }
    workgroupBarrier();
    var t = vec2<f32>(0.0);
    if (lid == 0u) {
        for (var k = 0u; k < side; k++) {
            t += acc2[k];
        }
    }
    return t;
}

// Index of this tile's partial result in a (C, nq·ns, ·) array.
fn part_index(wid: vec3<u32>) -> u32 {
    return wid.y * p.nq * p.ns + wid.z * p.nq + wid.x;
}

// ---------------------------------------------------------------------------------------
// Forward statistics.

@group(0) @binding(0) var<storage, read> sx: array<f32>;
@group(0) @binding(1) var<storage, read_write> spart: array<f32>;

// x is (N, C, P); spart is (C, nq·ns, 3) = [count, mean, M2] of each tile.
// Sums are of x − K with K the tile's first element, a sample of the data: shifting by a
// value near the mean keeps Σd² − (Σd)²/n from cancelling catastrophically when the
// mean is large compared with the spread (the textbook shifted-data variance).
@compute @workgroup_size(256)
fn bn_stats_partial(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let c = wid.y;
    let q_begin = wid.x * p.qspan;
    let q_end = min(p.inner, q_begin + p.qspan);
    let n_begin = wid.z * p.spw;
    let n_end = min(p.n, n_begin + p.spw);
    let shift = sx[(n_begin * p.c + c) * p.inner + q_begin];
    var s = vec2<f32>(0.0);
    for (var n = n_begin; n < n_end; n++) {
        let plane = (n * p.c + c) * p.inner;
        for (var q = q_begin + lid; q < q_end; q += WG) {
            let d = sx[plane + q] - shift;
            s += vec2<f32>(d, d * d);
        }
    }
    acc2[lid] = s;
    let t = reduce_acc2(lid, 16u);
    if (lid == 0u) {
        let cnt = f32((q_end - q_begin) * (n_end - n_begin));
        let o = part_index(wid) * 3u;
        spart[o] = cnt;
        spart[o + 1u] = shift + t.x / cnt;
        spart[o + 2u] = max(t.y - t.x * t.x / cnt, 0.0);
    }
}

@group(0) @binding(0) var<storage, read> fpart: array<f32>;
@group(0) @binding(1) var<storage, read> frm: array<f32>;
@group(0) @binding(2) var<storage, read> frv: array<f32>;
@group(0) @binding(3) var<storage, read_write> fstats: array<f32>;
@group(0) @binding(4) var<storage, read_write> fnew_rm: array<f32>;
@group(0) @binding(5) var<storage, read_write> fnew_rv: array<f32>;

// fpart is (C, nq·ns, 3) from bn_stats_partial; writes stats (C, 2) = [mean, invstd]
// and the running statistics: new = momentum·old + (1 − momentum)·batch, with the biased
// batch variance (see ops::norm on why). Tiles are merged with Chan et al.'s pairwise
// update, which stays accurate where a sum of squares would cancel.
@compute @workgroup_size(64)
fn bn_stats_final(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    let parts = p.nq * p.ns;
    var cnt = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var j = 0u; j < parts; j++) {
        let o = (c * parts + j) * 3u;
        let cb = fpart[o];
        let delta = fpart[o + 1u] - mean;
        let tot = cnt + cb;
        mean += delta * (cb / tot);
        m2 += fpart[o + 2u] + delta * delta * (cnt * cb / tot);
        cnt = tot;
    }
    let var_b = m2 / cnt;
    fstats[2u * c] = mean;
    fstats[2u * c + 1u] = inverseSqrt(var_b + p.eps);
    fnew_rm[c] = p.momentum * frm[c] + (1.0 - p.momentum) * mean;
    fnew_rv[c] = p.momentum * frv[c] + (1.0 - p.momentum) * var_b;
}

@group(0) @binding(0) var<storage, read> erm: array<f32>;
@group(0) @binding(1) var<storage, read> erv: array<f32>;
@group(0) @binding(2) var<storage, read_write> estats: array<f32>;

// Eval mode: stats (C, 2) = [running_mean, 1/sqrt(running_var + eps)].
@compute @workgroup_size(64)
fn bn_stats_eval(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    estats[2u * c] = erm[c];
    estats[2u * c + 1u] = inverseSqrt(erv[c] + p.eps);
}

// ---------------------------------------------------------------------------------------
// Normalise.

@group(0) @binding(0) var<storage, read> ax: array<f32>;
@group(0) @binding(1) var<storage, read> astats: array<f32>;
@group(0) @binding(2) var<storage, read> agamma: array<f32>;
@group(0) @binding(3) var<storage, read> abeta: array<f32>;
@group(0) @binding(4) var<storage, read_write> ay: array<f32>;

// With RELU, the ReLU that follows batch norm in most of the network, fused into the store:
// y = max(0, ·), one pass over the data instead of two.
override RELU: bool = false;

// x, y are (N, C, P), tiled like the reductions:
// y = gamma[c]·(x − mean[c])·invstd[c] + beta[c], folded into one multiply-add.
@compute @workgroup_size(256)
fn bn_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.y;
    let a = agamma[c] * astats[2u * c + 1u];
    let b = abeta[c] - astats[2u * c] * a;
    let q_begin = wid.x * p.qspan;
    let q_end = min(p.inner, q_begin + p.qspan);
    let n_end = min(p.n, (wid.z + 1u) * p.spw);
    for (var n = wid.z * p.spw; n < n_end; n++) {
        let plane = (n * p.c + c) * p.inner;
        for (var q = q_begin + lid; q < q_end; q += WG) {
            let v = a * ax[plane + q] + b;
            if (RELU) {
                ay[plane + q] = max(v, 0.0);
            } else {
                ay[plane + q] = v;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Backward.

@group(0) @binding(0) var<storage, read> gx: array<f32>;
@group(0) @binding(1) var<storage, read> gdy: array<f32>;
@group(0) @binding(2) var<storage, read> gstats: array<f32>;
@group(0) @binding(3) var<storage, read_write> gpart: array<f32>;
@group(0) @binding(4) var<storage, read> gy: array<f32>;

// Backward kernels: dy is masked by the fused ReLU's output y (see the header).
override MASK: bool = false;

// x, dy are (N, C, P); gpart is (C, nq·ns, 2) = tile sums of [dy, dy·x̂] with
// x̂ = (x − mean)·invstd: the two reductions every gradient of batch norm needs.
@compute @workgroup_size(256)
fn bn_grad_partial(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let c = wid.y;
    let mean = gstats[2u * c];
    let invstd = gstats[2u * c + 1u];
    let q_begin = wid.x * p.qspan;
    let q_end = min(p.inner, q_begin + p.qspan);
    let n_end = min(p.n, (wid.z + 1u) * p.spw);
    var s = vec2<f32>(0.0);
    for (var n = wid.z * p.spw; n < n_end; n++) {
        let plane = (n * p.c + c) * p.inner;
        for (var q = q_begin + lid; q < q_end; q += WG) {
            var g = gdy[plane + q];
            if (MASK) {
                g = select(0.0, g, gy[plane + q] > 0.0);
            }
            s += vec2<f32>(g, g * (gx[plane + q] - mean) * invstd);
        }
    }
    acc2[lid] = s;
    let t = reduce_acc2(lid, 16u);
    if (lid == 0u) {
        let o = part_index(wid) * 2u;
        gpart[o] = t.x;
        gpart[o + 1u] = t.y;
    }
}

@group(0) @binding(0) var<storage, read> hpart: array<f32>;
@group(0) @binding(1) var<storage, read_write> hdgamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> hdbeta: array<f32>;

// hpart is (C, nq·ns, 2): dbeta[c] = Σ dy, dgamma[c] = Σ dy·x̂.
@compute @workgroup_size(64)
fn bn_grad_final(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    let parts = p.nq * p.ns;
    var s = vec2<f32>(0.0);
    for (var j = 0u; j < parts; j++) {
        let o = (c * parts + j) * 2u;
        s += vec2<f32>(hpart[o], hpart[o + 1u]);
    }
    hdbeta[c] = s.x;
    hdgamma[c] = s.y;
}

@group(0) @binding(0) var<storage, read> ix: array<f32>;
@group(0) @binding(1) var<storage, read> idy: array<f32>;
@group(0) @binding(2) var<storage, read> istats: array<f32>;
@group(0) @binding(3) var<storage, read> igamma: array<f32>;
@group(0) @binding(4) var<storage, read> idgamma: array<f32>;
@group(0) @binding(5) var<storage, read> idbeta: array<f32>;
@group(0) @binding(6) var<storage, read_write> idx: array<f32>;
@group(0) @binding(7) var<storage, read> iy: array<f32>;

// x, dy, dx are (N, C, P), tiled like the reductions. Differentiates
//   y = gamma·x̂ + beta, x̂ = (x − mean)·invstd
// train (mean, invstd from the batch, m = N·P):
//   dx = gamma·invstd·(dy − (dbeta + x̂·dgamma)/m)
// eval (running statistics are constants): dx = gamma·invstd·dy
@compute @workgroup_size(256)
fn bn_backward_input(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let c = wid.y;
    let mean = istats[2u * c];
    let invstd = istats[2u * c + 1u];
    let k = igamma[c] * invstd;
    let inv_m = 1.0 / f32(p.n * p.inner);
    let db = idbeta[c] * inv_m;
    let dg = idgamma[c] * inv_m;
    let train = p.train != 0u;
    let q_begin = wid.x * p.qspan;
    let q_end = min(p.inner, q_begin + p.qspan);
    let n_end = min(p.n, (wid.z + 1u) * p.spw);
    for (var n = wid.z * p.spw; n < n_end; n++) {
        let plane = (n * p.c + c) * p.inner;
        for (var q = q_begin + lid; q < q_end; q += WG) {
            let xh = (ix[plane + q] - mean) * invstd;
            var g = idy[plane + q];
            if (MASK) {
                g = select(0.0, g, iy[plane + q] > 0.0);
            }
            // select, not a multiply by 0: in eval mode slots 4 and 5 may hold anything.
            idx[plane + q] = k * select(g, g - db - xh * dg, train);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The same kernels on vec4s (P a multiple of 4; `inner`, `qspan` in vec4s; see the header).

const WG4: u32 = 64u;

@group(0) @binding(0) var<storage, read> sx4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn bn_stats_partial4(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let c = wid.y;
    let q_begin = wid.x * p.qspan;
    let q_end = min(p.inner, q_begin + p.qspan);
    let n_begin = wid.z * p.spw;
    let n_end = min(p.n, n_begin + p.spw);
    let shift = sx4[(n_begin * p.c + c) * p.inner + q_begin].x;
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    for (var n = n_begin; n < n_end; n++) {
        let plane = (n * p.c + c) * p.inner;
        for (var q = q_begin + lid; q < q_end; q += WG4) {
            let d = sx4[plane + q] - shift;
            s1 += d;
            s2 += d * d;
        }
    }
    let one = vec4<f32>(1.0);
    acc2[lid] = vec2<f32>(dot(s1, one), dot(s2, one));
    let t = reduce_acc2(lid, 8u);
    if (lid == 0u) {
        let cnt = f32(4u * (q_end - q_begin) * (n_end - n_begin));
        let o = part_index(wid) * 3u;
        spart[o] = cnt;
        spart[o + 1u] = shift + t.x / cnt;
        spart[o + 2u] = max(t.y - t.x * t.x / cnt, 0.0);
    }
}

@group(0) @binding(0) var<storage, read> ax4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> ay4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn bn_apply4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.y;
    let a = agamma[c] * astats[2u * c + 1u];
    let b = abeta[c] - astats[2u * c] * a;
    let q_begin = wid.x * p.qspan;
    let q_end = min(p.inner, q_begin + p.qspan);
    let n_end = min(p.n, (wid.z + 1u) * p.spw);
    for (var n = wid.z * p.spw; n < n_end; n++) {
        let plane = (n * p.c + c) * p.inner;
        for (var q = q_begin + lid; q < q_end; q += WG4) {
            let v = a * ax4[plane + q] + b;
            if (RELU) {
                ay4[plane + q] = max(v, vec4<f32>(0.0));
            } else {
                ay4[plane + q] = v;
            }
        }
    }
}

@group(0) @binding(0) var<storage, read> gx4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> gdy4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> gy4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn bn_grad_partial4(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let c = wid.y;
    let mean = gstats[2u * c];
    let invstd = gstats[2u * c + 1u];
    let q_begin = wid.x * p.qspan;
    let q_end = min(p.inner, q_begin + p.qspan);
    let n_end = min(p.n, (wid.z + 1u) * p.spw);
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    for (var n = wid.z * p.spw; n < n_end; n++) {
        let plane = (n * p.c + c) * p.inner;
        for (var q = q_begin + lid; q < q_end; q += WG4) {
            var g = gdy4[plane + q];
            if (MASK) {
                g = select(vec4<f32>(0.0), g, gy4[plane + q] > vec4<f32>(0.0));
            }
            s1 += g;
            s2 += g * (gx4[plane + q] - mean) * invstd;
        }
    }
    let one = vec4<f32>(1.0);
    acc2[lid] = vec2<f32>(dot(s1, one), dot(s2, one));
    let t = reduce_acc2(lid, 8u);
    if (lid == 0u) {
        let o = part_index(wid) * 2u;
        gpart[o] = t.x;
        gpart[o + 1u] = t.y;
    }
}

@group(0) @binding(0) var<storage, read> ix4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> idy4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> idx4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> iy4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn bn_backward_input4(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let c = wid.y;
    let mean = istats[2u * c];
    let invstd = istats[2u * c + 1u];
    let k = igamma[c] * invstd;
    let inv_m = 1.0 / f32(4u * p.n * p.inner);
    let db = idbeta[c] * inv_m;
    let dg = idgamma[c] * inv_m;
    let train = p.train != 0u;
    let q_begin = wid.x * p.qspan;
    let q_end = min(p.inner, q_begin + p.qspan);
    let n_end = min(p.n, (wid.z + 1u) * p.spw);
    for (var n = wid.z * p.spw; n < n_end; n++) {
        let plane = (n * p.c + c) * p.inner;
        for (var q = q_begin + lid; q < q_end; q += WG4) {
            let xh = (ix4[plane + q] - mean) * invstd;
            var g = idy4[plane + q];
            if (MASK) {
                g = select(vec4<f32>(0.0), g, iy4[plane + q] > vec4<f32>(0.0));
            }
            idx4[plane + q] = k * select(g, g - db - xh * dg, train);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Inference: eval-mode batch norm folded into the 1×1 convolution before it. w is
// (Cout, Cin) with p.c = Cout and p.inner = Cin, b is (Cout), stats [mean, invstd] as
// bn_stats_eval makes them. With a = γ·invstd, as bn_apply computes it:
//   BN(w·x + b) = w'·x + b',  w'[o, i] = a[o]·w[o, i],  b'[o] = a[o]·b[o] + (β[o] − mean[o]·a[o]).
// One invocation per weight; the first Cout also write b'.

@group(0) @binding(0) var<storage, read> kw: array<f32>;
@group(0) @binding(1) var<storage, read> kb: array<f32>;
@group(0) @binding(2) var<storage, read> kstats: array<f32>;
@group(0) @binding(3) var<storage, read> kgamma: array<f32>;
@group(0) @binding(4) var<storage, read> kbeta: array<f32>;
@group(0) @binding(5) var<storage, read_write> kw_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> kb_out: array<f32>;

@compute @workgroup_size(256)
fn bn_fold(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.c * p.inner) { return; }
    let o = i / p.inner;
    let a = kgamma[o] * kstats[2u * o + 1u];
    kw_out[i] = a * kw[i];
    if (i < p.c) {
        let ai = kgamma[i] * kstats[2u * i + 1u];
        kb_out[i] = ai * kb[i] + (kbeta[i] - kstats[2u * i] * ai);
    }
}

// ---------------------------------------------------------------------------------------
// Training mode on CPU adapters: one workgroup per channel (grid (1, C, 1)), so that a
// channel's sums and their use are one dispatch instead of three: the sums over the whole
// channel, the workgroup's reduction, then the element-wise pass over the channel again.
// On lavapipe every dispatch costs ~40 µs before any work and a workgroup runs on one
// thread in sequence anyway, so the *_partial / *_final / element-wise chain above spends
// more on its dispatches than on its sums at the network's small maps; there are as many
// workgroups as channels (4 to 256 in the network) for the cores. P a multiple of 4,
// `inner` in vec4s. Each plane is summed on its own before it is added to the channel's
// sums, so no f32 sum grows over more than P/256 terms per lane.

const CWG: u32 = 64u;

@group(0) @binding(3) var<storage, read> cgamma: array<f32>;
@group(0) @binding(4) var<storage, read> cbeta: array<f32>;
@group(0) @binding(5) var<storage, read_write> cout: array<f32>;
@group(0) @binding(6) var<storage, read_write> cy4: array<vec4<f32>>;

// What the reducing invocation hands to the workgroup's element-wise pass.
var<workgroup> cshare: vec2<f32>;

// Where the new running mean and variance start in `cout`, after the (C, 2) statistics:
// each at a multiple of 64 elements (256 bytes, where a tensor view may start).
fn running_at(c: u32) -> vec2<u32> {
    let rm = (2u * c + 63u) / 64u * 64u;
    return vec2<u32>(rm, rm + (c + 63u) / 64u * 64u);
}

// x (slot 0) is (N, C, P); cout gets stats [mean, invstd] (C, 2) as bn_stats_final writes
// them and the new running statistics at `running_at`; y = γ·x̂ + β (then ReLU with RELU).
// The sums are of x − K, K the channel's first element (see bn_stats_partial).
@compute @workgroup_size(64)
fn bn_train_cpu4(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let c = wid.y;
    let shift = sx4[c * p.inner].x;
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    for (var n = 0u; n < p.n; n++) {
        let plane = (n * p.c + c) * p.inner;
        var t1 = vec4<f32>(0.0);
        var t2 = vec4<f32>(0.0);
        for (var q = lid; q < p.inner; q += CWG) {
            let d = sx4[plane + q] - shift;
            t1 += d;
            t2 += d * d;
        }
        s1 += t1;
        s2 += t2;
    }
    let one = vec4<f32>(1.0);
    acc2[lid] = vec2<f32>(dot(s1, one), dot(s2, one));
    let t = reduce_acc2(lid, 8u);
    if (lid == 0u) {
        let cnt = f32(4u * p.n * p.inner);
        let mean = shift + t.x / cnt;
        let var_b = max(t.y - t.x * t.x / cnt, 0.0) / cnt;
        let invstd = inverseSqrt(var_b + p.eps);
        cout[2u * c] = mean;
        cout[2u * c + 1u] = invstd;
        let r = running_at(p.c);
        cout[r.x + c] = p.momentum * frm[c] + (1.0 - p.momentum) * mean;
        cout[r.y + c] = p.momentum * frv[c] + (1.0 - p.momentum) * var_b;
        let a = cgamma[c] * invstd;
        cshare = vec2<f32>(a, cbeta[c] - mean * a);
    }
    workgroupBarrier();
    let ab = cshare;
    for (var n = 0u; n < p.n; n++) {
        let plane = (n * p.c + c) * p.inner;
        for (var q = lid; q < p.inner; q += CWG) {
            let v = ab.x * sx4[plane + q] + ab.y;
            if (RELU) {
                cy4[plane + q] = max(v, vec4<f32>(0.0));
            } else {
                cy4[plane + q] = v;
            }
        }
    }
}

@group(0) @binding(5) var<storage, read_write> cgrad: array<f32>;

// Whether bn_backward_cpu4 writes dx (slot 6) after dγ and dβ.
override DX: bool = true;

// Where dβ starts in `cgrad`, after dγ: at a multiple of 64 elements.
fn dbeta_at(c: u32) -> u32 {
    return (c + 63u) / 64u * 64u;
}

// The training-mode backward of bn_train_cpu4 in one dispatch, one workgroup per channel:
// dγ = Σ dy·x̂ (cgrad[c]) and dβ = Σ dy (cgrad[dbeta_at(C) + c]), then with DX
//   dx = γ·invstd·(dy − (dβ + x̂·dγ)/m), m = N·P,
// dy masked by the fused ReLU's output (slot 4) with MASK, as bn_grad_partial4 and
// bn_backward_input4 do in three dispatches.
@compute @workgroup_size(64)
fn bn_backward_cpu4(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let c = wid.y;
    let mean = gstats[2u * c];
    let invstd = gstats[2u * c + 1u];
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    for (var n = 0u; n < p.n; n++) {
        let plane = (n * p.c + c) * p.inner;
        var t1 = vec4<f32>(0.0);
        var t2 = vec4<f32>(0.0);
        for (var q = lid; q < p.inner; q += CWG) {
            var g = gdy4[plane + q];
            if (MASK) {
                g = select(vec4<f32>(0.0), g, gy4[plane + q] > vec4<f32>(0.0));
            }
            t1 += g;
            t2 += g * (gx4[plane + q] - mean) * invstd;
        }
        s1 += t1;
        s2 += t2;
    }
    let one = vec4<f32>(1.0);
    acc2[lid] = vec2<f32>(dot(s1, one), dot(s2, one));
    let t = reduce_acc2(lid, 8u);
    if (lid == 0u) {
        cgrad[c] = t.y;
        cgrad[dbeta_at(p.c) + c] = t.x;
        let inv_m = 1.0 / f32(4u * p.n * p.inner);
        cshare = vec2<f32>(t.x * inv_m, t.y * inv_m);
    }
    if (!DX) { return; }
    workgroupBarrier();
    let s = cshare;
    let k = cgamma[c] * invstd;
    for (var n = 0u; n < p.n; n++) {
        let plane = (n * p.c + c) * p.inner;
        for (var q = lid; q < p.inner; q += CWG) {
            let xh = (gx4[plane + q] - mean) * invstd;
            var g = gdy4[plane + q];
            if (MASK) {
                g = select(vec4<f32>(0.0), g, gy4[plane + q] > vec4<f32>(0.0));
            }
            idx4[plane + q] = k * (g - s.x - xh * s.y);
        }
    }
}

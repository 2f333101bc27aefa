// The training loss, sigmoid + ½·BCE + ½·Dice fused (MODEL.md "Loss", Eq. 4–9).
//
// z (logits) and y (mask) are (N, 1, H, W), seen as (N, P) with P = H·W. Per sample n:
//   p = sigmoid(z),  B = Σ softplus(z) − y·z,  S = Σ y·p,  T = Σ y² + Σ p²
//   L_n = ½·B/P + ½·(1 − (2S + ε)/(T + ε)),  ε = 1
// and the loss is mean_n L_n. Per-sample sums take two passes without atomics:
// loss_partial gives one workgroup a chunk of one sample (grid (chunks, N)), loss_final
// (a single invocation: N·chunks is a few dozen) merges them.

struct Params {
    n: u32,        // batch
    inner: u32,    // P = H·W
    chunk: u32,    // pixels per partial workgroup
    nchunks: u32,  // partial workgroups per sample
}

var<immediate> p: Params;

const WG: u32 = 256u;
// Pixels per invocation of loss_backward.
const PER: u32 = 4u;
// Dice smoothing (MODEL.md: ε = 1).
const EPS: f32 = 1.0;

// exp(−|z|) and the stable sigmoid from it: neither overflows for any finite z.
fn sigmoid_from(z: f32, e: f32) -> f32 {
    return select(e / (1.0 + e), 1.0 / (1.0 + e), z >= 0.0);
}

// log(1 + e) accurate for small e (WGSL has no log1p): when 1 + e rounds, the factor
// e / ((1 + e) − 1) corrects log(1 + e) for the rounding (Goldberg's trick).
fn log1p_small(e: f32) -> f32 {
    let u = 1.0 + e;
    let d = u - 1.0;
    return select(log(u) * (e / d), e, d == 0.0);
}

@group(0) @binding(0) var<storage, read> fz: array<f32>;
@group(0) @binding(1) var<storage, read> fy: array<f32>;
@group(0) @binding(2) var<storage, read_write> fpart: array<f32>;

var<workgroup> acc: array<vec4<f32>, WG>;

// fpart is (N, nchunks, 4) = chunk sums of [softplus(z) − y·z, y·p, y², p²], with
// softplus(z) = max(z, 0) + log1p(exp(−|z|)) so that logits of ±50 stay finite.
@compute @workgroup_size(256)
fn loss_partial(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let k = wid.x;
    let n = wid.y;
    let base = n * p.inner;
    let end = min(p.inner, (k + 1u) * p.chunk);
    var s = vec4<f32>(0.0);
    for (var q = k * p.chunk + lid; q < end; q += WG) {
        let z = fz[base + q];
        let y = fy[base + q];
        let e = exp(-abs(z));
        let pr = sigmoid_from(z, e);
        let softplus = max(z, 0.0) + log1p_small(e);
        s += vec4<f32>(softplus - y * z, y * pr, y * y, pr * pr);
    }
    acc[lid] = s;
    // Two barriers rather than a log2(256) = 8 level tree (barriers are what costs on
    // lavapipe): 16 lanes add 16 values each, then lane 0 adds their 16 sums.
    workgroupBarrier();
    if (lid < 16u) {
        var t = acc[lid];
        for (var j = 1u; j < 16u; j++) {
            t += acc[lid + 16u * j];
        }
        acc[lid] = t;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var t = vec4<f32>(0.0);
        for (var j = 0u; j < 16u; j++) {
            t += acc[j];
        }
        let o = (n * p.nchunks + k) * 4u;
        fpart[o] = t.x;
        fpart[o + 1u] = t.y;
        fpart[o + 2u] = t.z;
        fpart[o + 3u] = t.w;
    }
}

@group(0) @binding(0) var<storage, read> mpart: array<f32>;
@group(0) @binding(1) var<storage, read_write> mloss: array<f32>;
@group(0) @binding(2) var<storage, read_write> msamples: array<f32>;
@group(0) @binding(3) var<storage, read_write> mcoef: array<f32>;

// mpart is (N, nchunks, 4); writes msamples (N) = L_n, mloss (1) = mean_n L_n, and
// mcoef (N, 2) = [S, T] for loss_backward.
@compute @workgroup_size(1)
fn loss_final() {
    var total = 0.0;
    for (var n = 0u; n < p.n; n++) {
        var s = vec4<f32>(0.0);
        for (var k = 0u; k < p.nchunks; k++) {
            let o = (n * p.nchunks + k) * 4u;
            s += vec4<f32>(mpart[o], mpart[o + 1u], mpart[o + 2u], mpart[o + 3u]);
        }
        let t = s.z + s.w;
        let bce = s.x / f32(p.inner);
        let dice = 1.0 - (2.0 * s.y + EPS) / (t + EPS);
        let l = 0.5 * bce + 0.5 * dice;
        msamples[n] = l;
        mcoef[2u * n] = s.y;
        mcoef[2u * n + 1u] = t;
        total += l;
    }
    mloss[0] = total / f32(p.n);
}

@group(0) @binding(0) var<storage, read> bz: array<f32>;
@group(0) @binding(1) var<storage, read> by: array<f32>;
@group(0) @binding(2) var<storage, read> bcoef: array<f32>;
@group(0) @binding(3) var<storage, read> bdy: array<f32>;
@group(0) @binding(4) var<storage, read_write> bdz: array<f32>;

// z, y, dz are (N, P), grid (ceil(P / (256·PER)), N); bcoef (N, 2) = [S, T]; bdy (1) is
// the gradient of the batch mean. Differentiates
//   loss = (1/N)·Σ_n [½·Σ_i (softplus(z_i) − y_i·z_i)/P + ½·(1 − (2S + ε)/(T + ε))]
// dz_i = dy/N·[(p_i − y_i)/(2P) + ½·dDice_i·p_i·(1 − p_i)],
// dDice_i = −2·[y_i·(T + ε) − p_i·(2S + ε)]/(T + ε)²
@compute @workgroup_size(256)
fn loss_backward(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let n = wid.y;
    let base = n * p.inner;
    let g = bdy[0] / f32(p.n);
    let s = bcoef[2u * n];
    let te = bcoef[2u * n + 1u] + EPS;
    let se = 2.0 * s + EPS;
    let k_bce = g * 0.5 / f32(p.inner);
    // ½·(−2)/(T + ε)² folded with g.
    let k_dice = -g / (te * te);
    let q0 = wid.x * (WG * PER) + lid;
    for (var j = 0u; j < PER; j++) {
        let q = q0 + j * WG;
        if (q < p.inner) {
            let z = bz[base + q];
            let y = by[base + q];
            let pr = sigmoid_from(z, exp(-abs(z)));
            let ddice = k_dice * (y * te - pr * se);
            bdz[base + q] = k_bce * (pr - y) + ddice * pr * (1.0 - pr);
        }
    }
}

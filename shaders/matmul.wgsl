// Batched, strided matrix product, register-blocked: the engine of every 1×1 convolution.
//
//   C[z, m, n] = sum_{k in chunk(z)} A[b, m, k] · B[b, k, n]  (+ bias[m])  (+ C[z, m, n]: ACC)
// (then max(0, ·) with RELU)
//
// with b = z / splits and chunk(z) the (z % splits)-th slice of K of length kchunk
// (split-K: the caller sums the `splits` partial products). A and B are addressed through
// strides, A from element a_off of its binding on, so the same kernel computes W·X
// (forward), Wᵀ·dY (input gradient) and dY·Xᵀ (weight gradient), and takes a block of a
// weight matrix's columns, without copying or transposing anything in memory. C is
// row-major per z.
//
// The parameter block, the vec4 views A4/B4/C4, the bias, the ACC override, the epilogue
// flags and `store_quad` are in shaders/matmul_common.wgsl, which the runtime puts before
// this file.
//
// Each invocation computes a 4×8 tile of C (four rows, two vec4 of columns), so every
// value loaded from A is used eight times and every value from B four times; a
// workgroup of 8×8 invocations covers 32×64. Loads are clamped into range (no branch in the
// inner loop); only the stores are guarded.

@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;

const TM: u32 = 4u;
const TN: u32 = 8u;

fn acc1(i: u32) -> f32 {
    if (accumulates()) { return C[i]; }
    return 0.0;
}

fn act(v: f32) -> f32 {
    if ((p.flags & RELU) != 0u) { return max(v, 0.0); }
    return v;
}

@compute @workgroup_size(8, 8, 1)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = (wid.y * 8u + lid.y) * TM;
    let n0 = (wid.x * 8u + lid.x) * TN;
    if (m0 >= p.m || n0 >= p.n) { return; }
    let z = wid.z;
    let batch = z / p.splits;
    let k_begin = (z % p.splits) * p.kchunk;
    let k_end = min(p.k, k_begin + p.kchunk);

    // Row and column indices clamped into the matrix: out-of-range lanes compute a
    // duplicate of the last row/column and are not stored.
    let ma = p.a_off + batch * p.a_sb + k_begin * p.a_sk;
    var pa0 = ma + min(m0, p.m - 1u) * p.a_sm;
    var pa1 = ma + min(m0 + 1u, p.m - 1u) * p.a_sm;
    var pa2 = ma + min(m0 + 2u, p.m - 1u) * p.a_sm;
    var pa3 = ma + min(m0 + 3u, p.m - 1u) * p.a_sm;
    let nb = batch * p.b_sb + k_begin * p.b_sk;
    var pb0 = nb + min(n0, p.n - 1u) * p.b_sn;
    var pb1 = nb + min(n0 + 1u, p.n - 1u) * p.b_sn;
    var pb2 = nb + min(n0 + 2u, p.n - 1u) * p.b_sn;
    var pb3 = nb + min(n0 + 3u, p.n - 1u) * p.b_sn;
    var pb4 = nb + min(n0 + 4u, p.n - 1u) * p.b_sn;
    var pb5 = nb + min(n0 + 5u, p.n - 1u) * p.b_sn;
    var pb6 = nb + min(n0 + 6u, p.n - 1u) * p.b_sn;
    var pb7 = nb + min(n0 + 7u, p.n - 1u) * p.b_sn;

    var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0); var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0); var c31 = vec4<f32>(0.0);
    for (var kk = k_begin; kk < k_end; kk++) {
        let b0 = vec4<f32>(B[pb0], B[pb1], B[pb2], B[pb3]);
        let b1 = vec4<f32>(B[pb4], B[pb5], B[pb6], B[pb7]);
        let a0 = A[pa0]; let a1 = A[pa1]; let a2 = A[pa2]; let a3 = A[pa3];
        c00 = fma(vec4<f32>(a0), b0, c00); c01 = fma(vec4<f32>(a0), b1, c01);
        c10 = fma(vec4<f32>(a1), b0, c10); c11 = fma(vec4<f32>(a1), b1, c11);
        c20 = fma(vec4<f32>(a2), b0, c20); c21 = fma(vec4<f32>(a2), b1, c21);
        c30 = fma(vec4<f32>(a3), b0, c30); c31 = fma(vec4<f32>(a3), b1, c31);
        pa0 += p.a_sk; pa1 += p.a_sk; pa2 += p.a_sk; pa3 += p.a_sk;
        pb0 += p.b_sk; pb1 += p.b_sk; pb2 += p.b_sk; pb3 += p.b_sk;
        pb4 += p.b_sk; pb5 += p.b_sk; pb6 += p.b_sk; pb7 += p.b_sk;
    }

    let cz = z * p.c_sb;
    store_row(cz, m0, n0, c00, c01);
    store_row(cz, m0 + 1u, n0, c10, c11);
    store_row(cz, m0 + 2u, n0, c20, c21);
    store_row(cz, m0 + 3u, n0, c30, c31);
}

fn store_row(cz: u32, m: u32, n0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (m >= p.m) { return; }
    var bv = 0.0;
    if ((p.flags & BIAS) != 0u) { bv = bias[m]; }
    let row = cz + m * p.c_sm;
    let v = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
    for (var j = 0u; j < TN; j++) {
        if (n0 + j < p.n) {
            C[row + n0 + j] = act(acc1(row + n0 + j) + v[j] + bv);
        }
    }
}

// ---------------------------------------------------------------------------------------
// matmul4: the same product with vec4 loads, for operands whose rows are 16-byte aligned
// (K and N multiples of 4, and every stride a multiple of 4; the caller checks). A 4×4
// block of A and a 4×8 block of B are loaded per four steps of k as vec4s; a block stored
// the other way round is turned in registers with one mat4x4 transpose.
//   A_ROWS: A is M×K with k contiguous (a_sk = 1)   else: A is given as K×M, m contiguous
//   B_ROWS: B is K×N with n contiguous (b_sn = 1)   else: B is given as N×K, k contiguous
// Strides in the Params are in floats, as for `matmul`.

override A_ROWS: bool = true;
override B_ROWS: bool = true;

@compute @workgroup_size(8, 8, 1)
fn matmul4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = (wid.y * 8u + lid.y) * TM;
    let n0 = (wid.x * 8u + lid.x) * TN;
    if (m0 >= p.m || n0 >= p.n) { return; }
    let z = wid.z;
    let batch = z / p.splits;
    let k_begin = (z % p.splits) * p.kchunk;
    let k_end = min(p.k, k_begin + p.kchunk);
    // n0 < N and N % 4 == 0, so columns n0..n0+3 exist; n0+4..n0+7 may not (clamped).
    let n_hi = select(n0, n0 + 4u, n0 + 4u < p.n);

    var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0); var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0); var c31 = vec4<f32>(0.0);
    let a_base = p.a_off + batch * p.a_sb;
    let b_base = batch * p.b_sb;
    for (var k = k_begin; k < k_end; k += 4u) {
        // am[kk] = A[m0..m0+3, k+kk] as a vec4 over m.
        var am: mat4x4<f32>;
        if (A_ROWS) {
            am = transpose(mat4x4<f32>(
                A4[(a_base + min(m0, p.m - 1u) * p.a_sm + k) / 4u],
                A4[(a_base + min(m0 + 1u, p.m - 1u) * p.a_sm + k) / 4u],
                A4[(a_base + min(m0 + 2u, p.m - 1u) * p.a_sm + k) / 4u],
                A4[(a_base + min(m0 + 3u, p.m - 1u) * p.a_sm + k) / 4u]));
        } else {
            am = mat4x4<f32>(
                A4[(a_base + k * p.a_sk + m0) / 4u],
                A4[(a_base + (k + 1u) * p.a_sk + m0) / 4u],
                A4[(a_base + (k + 2u) * p.a_sk + m0) / 4u],
                A4[(a_base + (k + 3u) * p.a_sk + m0) / 4u]);
        }
        // blo[kk] = B[k+kk, n0..n0+3], bhi[kk] = B[k+kk, n0+4..n0+7] as vec4s over n.
        var blo: mat4x4<f32>;
        var bhi: mat4x4<f32>;
        if (B_ROWS) {
            let r = b_base + k * p.b_sk;
            blo = mat4x4<f32>(
                B4[(r + n0) / 4u], B4[(r + p.b_sk + n0) / 4u],
                B4[(r + 2u * p.b_sk + n0) / 4u], B4[(r + 3u * p.b_sk + n0) / 4u]);
            bhi = mat4x4<f32>(
                B4[(r + n_hi) / 4u], B4[(r + p.b_sk + n_hi) / 4u],
                B4[(r + 2u * p.b_sk + n_hi) / 4u], B4[(r + 3u * p.b_sk + n_hi) / 4u]);
        } else {
            let r = b_base + k;
            let last = p.n - 1u;
            blo = transpose(mat4x4<f32>(
                B4[(r + n0 * p.b_sn) / 4u], B4[(r + min(n0 + 1u, last) * p.b_sn) / 4u],
                B4[(r + min(n0 + 2u, last) * p.b_sn) / 4u], B4[(r + min(n0 + 3u, last) * p.b_sn) / 4u]));
            bhi = transpose(mat4x4<f32>(
                B4[(r + min(n0 + 4u, last) * p.b_sn) / 4u], B4[(r + min(n0 + 5u, last) * p.b_sn) / 4u],
                B4[(r + min(n0 + 6u, last) * p.b_sn) / 4u], B4[(r + min(n0 + 7u, last) * p.b_sn) / 4u]));
        }
        for (var kk = 0u; kk < 4u; kk++) {
            let a = am[kk];
            let lo = blo[kk];
            let hi = bhi[kk];
            c00 = fma(vec4<f32>(a.x), lo, c00); c01 = fma(vec4<f32>(a.x), hi, c01);
            c10 = fma(vec4<f32>(a.y), lo, c10); c11 = fma(vec4<f32>(a.y), hi, c11);
            c20 = fma(vec4<f32>(a.z), lo, c20); c21 = fma(vec4<f32>(a.z), hi, c21);
            c30 = fma(vec4<f32>(a.w), lo, c30); c31 = fma(vec4<f32>(a.w), hi, c31);
        }
    }
    let cz = z * p.c_sb;
    store_row4(cz, m0, n0, c00, c01);
    store_row4(cz, m0 + 1u, n0, c10, c11);
    store_row4(cz, m0 + 2u, n0, c20, c21);
    store_row4(cz, m0 + 3u, n0, c30, c31);
}

fn store_row4(cz: u32, m: u32, n0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (m >= p.m) { return; }
    var bv = 0.0;
    if ((p.flags & BIAS) != 0u) { bv = bias[m]; }
    let row = cz + m * p.c_sm + n0;
    C4[row / 4u] = act4(acc4(row / 4u) + lo + vec4<f32>(bv));
    if (n0 + 4u < p.n) {
        C4[row / 4u + 1u] = act4(acc4(row / 4u + 1u) + hi + vec4<f32>(bv));
    }
}

// ---------------------------------------------------------------------------------------
// matmul_cpu: the product shaped for CPU adapters (lavapipe). There, 8 consecutive
// invocations are the lanes of one AVX2 register and every load instruction costs about
// the same, so what counts is loads per FMA, not tiles. Each invocation computes 16 rows
// × 4 columns of C: per step of k it loads one vec4 of B (4 consecutive columns) and four
// vec4 of A (16 consecutive rows), 5 loads for 64 FMAs, and consecutive invocations take
// consecutive column quads, so a B load is one contiguous run across the lanes. No
// workgroup memory, no barriers, no split-K (splits = 1).
//   A is given as K×M (a_sm = 1, a_sk the row stride), B as K×N (b_sn = 1); N and every
//   stride are multiples of 4, and A's rows hold M rounded up to a quad (the caller checks;
//   see `last_quad`). Grid: (N/4 / 64, ⌈M/16⌉, batch).

@compute @workgroup_size(64, 1, 1)
fn matmul_cpu(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(workgroup_id) wid: vec3<u32>) {
    let n0 = gid.x * 4u;
    if (n0 >= p.n) { return; }
    let m0 = wid.y * 16u;
    let z = wid.z;
    // Row quads clamped into A's padded rows: a quad past the end recomputes the last one
    // and is not stored.
    let last = last_quad();
    let ab = p.a_off + z * p.a_sb;
    let pa0 = ab + min(m0, last);
    let pa1 = ab + min(m0 + 4u, last);
    let pa2 = ab + min(m0 + 8u, last);
    let pa3 = ab + min(m0 + 12u, last);
    var pb = z * p.b_sb + n0;
    var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0); var c5 = vec4<f32>(0.0); var c6 = vec4<f32>(0.0); var c7 = vec4<f32>(0.0);
    var c8 = vec4<f32>(0.0); var c9 = vec4<f32>(0.0); var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
    var c12 = vec4<f32>(0.0); var c13 = vec4<f32>(0.0); var c14 = vec4<f32>(0.0); var c15 = vec4<f32>(0.0);
    var ka = 0u;
    for (var k = 0u; k < p.k; k++) {
        let b = B4[pb / 4u];
        let a0 = A4[(pa0 + ka) / 4u];
        let a1 = A4[(pa1 + ka) / 4u];
        let a2 = A4[(pa2 + ka) / 4u];
        let a3 = A4[(pa3 + ka) / 4u];
        c0 = fma(vec4<f32>(a0.x), b, c0); c1 = fma(vec4<f32>(a0.y), b, c1);
        c2 = fma(vec4<f32>(a0.z), b, c2); c3 = fma(vec4<f32>(a0.w), b, c3);
        c4 = fma(vec4<f32>(a1.x), b, c4); c5 = fma(vec4<f32>(a1.y), b, c5);
        c6 = fma(vec4<f32>(a1.z), b, c6); c7 = fma(vec4<f32>(a1.w), b, c7);
        c8 = fma(vec4<f32>(a2.x), b, c8); c9 = fma(vec4<f32>(a2.y), b, c9);
        c10 = fma(vec4<f32>(a2.z), b, c10); c11 = fma(vec4<f32>(a2.w), b, c11);
        c12 = fma(vec4<f32>(a3.x), b, c12); c13 = fma(vec4<f32>(a3.y), b, c13);
        c14 = fma(vec4<f32>(a3.z), b, c14); c15 = fma(vec4<f32>(a3.w), b, c15);
        pb += p.b_sk;
        ka += p.a_sk;
    }
    let cz = z * p.c_sb + n0;
    store_quad(cz, m0, c0, c1, c2, c3);
    store_quad(cz, m0 + 4u, c4, c5, c6, c7);
    store_quad(cz, m0 + 8u, c8, c9, c10, c11);
    store_quad(cz, m0 + 12u, c12, c13, c14, c15);
}

// ---------------------------------------------------------------------------------------
// matmul_nt_cpu: C = Σ_k A[b, m, k]·B[b, n, k] with k contiguous in both (the weight
// gradients dY·Xᵀ), shaped for CPU adapters. Each invocation computes a 4×4 block of C
// over one chunk of K, four steps of k at a time: four vec4 of A, the same for the 8
// invocations that are one vector on lavapipe (they share the block's rows, so the loads
// are uniform), and four vec4 of B, each invocation its own four columns: 64
// multiply-adds (as dot products) per 4 uniform and 4 varying loads. C gets one block per
// (batch, chunk) — split-K, added up by the caller. K, M, N and the strides are multiples
// of 4 (the caller checks). Grid: (N/4 / 8, M/4 / 8, batch · chunks), `splits` = chunks.

@compute @workgroup_size(8, 8, 1)
fn matmul_nt_cpu(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(workgroup_id) wid: vec3<u32>) {
    let n0 = gid.x * 4u;
    let m0 = gid.y * 8u;
    if (n0 >= p.n || m0 >= p.m) { return; }
    let z = wid.z;
    let batch = z / p.splits;
    let k_begin = (z % p.splits) * p.kchunk;
    let k_end = min(p.k, k_begin + p.kchunk);
    let sa = p.a_sm / 4u;
    let sb = p.b_sn / 4u;
    // Rows past M (M % 8 == 4) recompute the last four and are not stored.
    let pa = (p.a_off + batch * p.a_sb + m0 * p.a_sm) / 4u;
    let hi = select(0u, 4u, m0 + 4u < p.m);
    let pa_hi = pa + hi * sa;
    let pb = (batch * p.b_sb + n0 * p.b_sn) / 4u;
    var r0 = vec4<f32>(0.0); var r1 = vec4<f32>(0.0);
    var r2 = vec4<f32>(0.0); var r3 = vec4<f32>(0.0);
    var r4 = vec4<f32>(0.0); var r5 = vec4<f32>(0.0);
    var r6 = vec4<f32>(0.0); var r7 = vec4<f32>(0.0);
    for (var q = k_begin / 4u; q < k_end / 4u; q++) {
        let b0 = B4[pb + q]; let b1 = B4[pb + sb + q];
        let b2 = B4[pb + 2u * sb + q]; let b3 = B4[pb + 3u * sb + q];
        let a0 = A4[pa + q]; let a1 = A4[pa + sa + q];
        let a2 = A4[pa + 2u * sa + q]; let a3 = A4[pa + 3u * sa + q];
        r0 += vec4<f32>(dot(a0, b0), dot(a0, b1), dot(a0, b2), dot(a0, b3));
        r1 += vec4<f32>(dot(a1, b0), dot(a1, b1), dot(a1, b2), dot(a1, b3));
        r2 += vec4<f32>(dot(a2, b0), dot(a2, b1), dot(a2, b2), dot(a2, b3));
        r3 += vec4<f32>(dot(a3, b0), dot(a3, b1), dot(a3, b2), dot(a3, b3));
        let a4 = A4[pa_hi + q]; let a5 = A4[pa_hi + sa + q];
        let a6 = A4[pa_hi + 2u * sa + q]; let a7 = A4[pa_hi + 3u * sa + q];
        r4 += vec4<f32>(dot(a4, b0), dot(a4, b1), dot(a4, b2), dot(a4, b3));
        r5 += vec4<f32>(dot(a5, b0), dot(a5, b1), dot(a5, b2), dot(a5, b3));
        r6 += vec4<f32>(dot(a6, b0), dot(a6, b1), dot(a6, b2), dot(a6, b3));
        r7 += vec4<f32>(dot(a7, b0), dot(a7, b1), dot(a7, b2), dot(a7, b3));
    }
    let row = z * p.c_sb + m0 * p.c_sm + n0;
    C4[row / 4u] = r0;
    C4[(row + p.c_sm) / 4u] = r1;
    C4[(row + 2u * p.c_sm) / 4u] = r2;
    C4[(row + 3u * p.c_sm) / 4u] = r3;
    if (hi != 0u) {
        C4[(row + 4u * p.c_sm) / 4u] = r4;
        C4[(row + 5u * p.c_sm) / 4u] = r5;
        C4[(row + 6u * p.c_sm) / 4u] = r6;
        C4[(row + 7u * p.c_sm) / 4u] = r7;
    }
}

// transpose_matrix: C (N × M) = Aᵀ for A given M×N row-major (a_sm its row stride); one
// invocation per element of C, 64 per workgroup on a 2-D grid (m along x). For the CPU
// product's K×M operand when the weights are stored M×K.
@compute @workgroup_size(64, 1, 1)
fn transpose_matrix(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m = gid.x;
    let n = gid.y;
    if (m >= p.m || n >= p.n) { return; }
    C[n * p.c_sm + m] = A[p.a_off + m * p.a_sm + n];
}

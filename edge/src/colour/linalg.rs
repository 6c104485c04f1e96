//! Small dense linear algebra for stain vectors: 3x3 symmetric eigen-decomposition, 3x2 pseudo-inverse.

// Index loops read as the matrix formulas they implement.
#![allow(clippy::needless_range_loop)]

/// Eigenvalues (descending) and unit eigenvectors (`vectors[i]` belongs to `values[i]`) of a
/// symmetric 3x3 matrix, by cyclic Jacobi rotations (converges to machine precision in a
/// handful of sweeps for 3x3).
pub fn symmetric_eigen(m: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut a = m;
    // Columns of v are the eigenvectors.
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..64 {
        let off = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        let scale = a[0][0].abs() + a[1][1].abs() + a[2][2].abs();
        if off <= f64::EPSILON * scale * 1e-3 || off == 0.0 {
            break;
        }
        for (p, q) in [(0usize, 1usize), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // A <- J^T A J with J the rotation in the (p, q) plane.
            for k in 0..3 {
                let akp = a[k][p];
                let akq = a[k][q];
                a[k][p] = c * akp - s * akq;
                a[k][q] = s * akp + c * akq;
            }
            for k in 0..3 {
                let apk = a[p][k];
                let aqk = a[q][k];
                a[p][k] = c * apk - s * aqk;
                a[q][k] = s * apk + c * aqk;
            }
            for row in v.iter_mut() {
                let vkp = row[p];
                let vkq = row[q];
                row[p] = c * vkp - s * vkq;
                row[q] = s * vkp + c * vkq;
            }
        }
    }
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
    let values = order.map(|i| a[i][i]);
    let vectors = order.map(|i| [v[0][i], v[1][i], v[2][i]]);
    (values, vectors)
}

/// Dot product.
#[inline]
pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Euclidean length.
#[inline]
pub fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

/// Cross product.
#[inline]
pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// Angle between two directions in degrees (0..180); 90 when either is zero.
pub fn angle_deg(a: [f64; 3], b: [f64; 3]) -> f64 {
    let n = norm(a) * norm(b);
    if n == 0.0 || !n.is_finite() {
        return 90.0;
    }
    (dot(a, b) / n).clamp(-1.0, 1.0).acos().to_degrees()
}

/// Column `j` of a 3x2 matrix stored as rows.
#[inline]
pub fn column(m: &[[f64; 2]; 3], j: usize) -> [f64; 3] {
    [m[0][j], m[1][j], m[2][j]]
}

/// The least-squares solution operator `(MᵀM)⁻¹Mᵀ` of a 3x2 matrix (what `numpy.linalg.lstsq`
/// computes for a full-rank one), or None when its columns are (nearly) parallel.
pub fn pinv_3x2(m: &[[f64; 2]; 3]) -> Option<[[f64; 3]; 2]> {
    let a = column(m, 0);
    let b = column(m, 1);
    let (aa, ab, bb) = (dot(a, a), dot(a, b), dot(b, b));
    let det = aa * bb - ab * ab;
    // det = |a|²|b|² sin²(angle): refuse directions less than ~0.001° apart.
    if det.is_nan() || det <= 1e-10 * aa * bb || !det.is_finite() {
        return None;
    }
    let (i00, i01, i11) = (bb / det, -ab / det, aa / det);
    let mut out = [[0f64; 3]; 2];
    for k in 0..3 {
        out[0][k] = i00 * a[k] + i01 * b[k];
        out[1][k] = i01 * a[k] + i11 * b[k];
    }
    Some(out)
}

/// numpy's default (`linear`) percentile of `v`, `q` in percent; reorders `v`. NaN when empty.
pub fn percentile(v: &mut [f64], q: f64) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = (q / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let frac = rank - lo as f64;
    let (_, a, upper) = v.select_nth_unstable_by(lo, f64::total_cmp);
    let a = *a;
    if frac == 0.0 || upper.is_empty() {
        return a;
    }
    let b = upper.iter().copied().fold(f64::INFINITY, f64::min);
    // numpy's _lerp: the same formula from whichever end is nearer.
    let diff = b - a;
    if frac >= 0.5 {
        b - diff * (1.0 - frac)
    } else {
        a + diff * frac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_of_a_known_matrix() {
        // Eigenvalues 6, 3, 1 for this symmetric matrix (a rotated diagonal).
        let m = [[2.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 2.0]];
        let (vals, vecs) = symmetric_eigen(m);
        let want = [2.0 + 2f64.sqrt(), 2.0, 2.0 - 2f64.sqrt()];
        for i in 0..3 {
            assert!((vals[i] - want[i]).abs() < 1e-12, "{vals:?}");
            // M v = λ v
            let v = vecs[i];
            for r in 0..3 {
                let mv = m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2];
                assert!((mv - vals[i] * v[r]).abs() < 1e-12);
            }
            assert!((norm(v) - 1.0).abs() < 1e-12);
        }
        let (z, _) = symmetric_eigen([[0.0; 3]; 3]);
        assert_eq!(z, [0.0; 3]);
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        let mut v: Vec<f64> = (0..11).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), 5.0);
        assert!((percentile(&mut v, 1.0) - 0.1).abs() < 1e-12);
        assert!((percentile(&mut v, 99.0) - 9.9).abs() < 1e-12);
        assert_eq!(percentile(&mut [3.0], 99.0), 3.0);
        assert!(percentile(&mut [], 50.0).is_nan());
    }

    #[test]
    fn pinv_solves_least_squares() {
        let m = [[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]];
        let p = pinv_3x2(&m).unwrap();
        // pinv * M = I
        for i in 0..2 {
            for j in 0..2 {
                let s: f64 = (0..3).map(|k| p[i][k] * m[k][j]).sum();
                assert!((s - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        assert!(pinv_3x2(&[[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]).is_none());
        assert!((angle_deg([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]) - 90.0).abs() < 1e-12);
    }
}

//! Deterministic Nelder–Mead minimisation over log-parameters, used to fit
//! each device family's efficiency parameters to calibration points.

/// Minimises `f` from `x0` (already in the search space, e.g. logs),
/// with initial simplex steps of `step`, for at most `max_evals`
/// evaluations. Returns the best point and its value. Deterministic:
/// identical inputs give identical results.
pub fn nelder_mead(
    f: &mut dyn FnMut(&[f64]) -> f64,
    x0: &[f64],
    step: f64,
    max_evals: usize,
) -> (Vec<f64>, f64) {
    let d = x0.len();
    if d == 0 {
        let v = f(x0);
        return (Vec::new(), v);
    }
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(d + 1);
    let v0 = f(x0);
    simplex.push((x0.to_vec(), v0));
    for i in 0..d {
        let mut x = x0.to_vec();
        x[i] += step;
        let v = f(&x);
        simplex.push((x, v));
    }
    let mut evals = d + 1;
    let sort = |s: &mut Vec<(Vec<f64>, f64)>| s.sort_by(|a, b| a.1.total_cmp(&b.1));
    while evals < max_evals {
        sort(&mut simplex);
        let spread = simplex[d].1 - simplex[0].1;
        if spread.abs() < 1e-12 {
            break;
        }
        let centroid: Vec<f64> = (0..d)
            .map(|j| simplex[..d].iter().map(|p| p.0[j]).sum::<f64>() / d as f64)
            .collect();
        let towards = |t: f64, worst: &[f64]| -> Vec<f64> {
            centroid
                .iter()
                .zip(worst)
                .map(|(c, w)| c + t * (w - c))
                .collect()
        };
        let worst = simplex[d].0.clone();
        let xr = towards(-1.0, &worst);
        let vr = f(&xr);
        evals += 1;
        if vr < simplex[0].1 {
            let xe = towards(-2.0, &worst);
            let ve = f(&xe);
            evals += 1;
            simplex[d] = if ve < vr { (xe, ve) } else { (xr, vr) };
        } else if vr < simplex[d - 1].1 {
            simplex[d] = (xr, vr);
        } else {
            let (xc, vc) = if vr < simplex[d].1 {
                let x = towards(-0.5, &worst);
                let v = f(&x);
                (x, v)
            } else {
                let x = towards(0.5, &worst);
                let v = f(&x);
                (x, v)
            };
            evals += 1;
            if vc < simplex[d].1.min(vr) {
                simplex[d] = (xc, vc);
            } else {
                let best = simplex[0].0.clone();
                for p in simplex.iter_mut().skip(1) {
                    let x: Vec<f64> = best
                        .iter()
                        .zip(&p.0)
                        .map(|(b, x)| b + 0.5 * (x - b))
                        .collect();
                    let v = f(&x);
                    *p = (x, v);
                }
                evals += d;
            }
        }
    }
    sort(&mut simplex);
    let (x, v) = simplex.swap_remove(0);
    (x, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_a_shifted_quadratic_and_rosenbrock() {
        let mut q = |x: &[f64]| (x[0] - 1.0).powi(2) + 10.0 * (x[1] + 2.0).powi(2);
        let (x, v) = nelder_mead(&mut q, &[0.0, 0.0], 0.5, 2000);
        assert!(
            v < 1e-8 && (x[0] - 1.0).abs() < 1e-3 && (x[1] + 2.0).abs() < 1e-3,
            "{x:?}"
        );
        let mut r = |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let (x, _) = nelder_mead(&mut r, &[-1.2, 1.0], 0.5, 5000);
        assert!(
            (x[0] - 1.0).abs() < 1e-2 && (x[1] - 1.0).abs() < 2e-2,
            "{x:?}"
        );
    }
}

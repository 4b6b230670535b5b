//! A map over items on a few scoped threads, in contiguous chunks, keeping the items' order:
//! the per-series model work (ETS fits and updates) of an operator.

use krxflow_core::{OpError, OpResult};

/// `f` over `items` on `workers` threads (0 = the machine's cores), results in item order.
/// Stops early with [`OpError::Cancelled`] once `cancelled()` says so.
pub fn map_chunked<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    cancelled: &(dyn Fn() -> bool + Sync),
    f: impl Fn(&T) -> R + Sync,
) -> OpResult<Vec<R>> {
    let workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(items.len().max(1));
    let chunk = items.len().div_ceil(workers).max(1);
    let f = &f;
    let parts: Vec<Vec<R>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .take_while(|_| !cancelled())
                        .map(f)
                        .collect::<Vec<R>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let out: Vec<R> = parts.into_iter().flatten().collect();
    if cancelled() || out.len() != items.len() {
        // A worker that panicked returned nothing: never hand back a shortened result.
        return Err(if cancelled() {
            OpError::Cancelled
        } else {
            OpError::permanent("a worker thread panicked")
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order_on_any_number_of_workers() {
        let items: Vec<u32> = (0..103).collect();
        for workers in [0, 1, 2, 7, 500] {
            let out = map_chunked(&items, workers, &|| false, |x| x * 2).expect("map");
            assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        }
        assert!(
            map_chunked(&[] as &[u32], 2, &|| false, |x| *x)
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn a_cancelled_map_is_an_error_not_a_short_result() {
        let items: Vec<u32> = (0..10).collect();
        let out = map_chunked(&items, 2, &|| true, |x| *x);
        assert!(matches!(out, Err(OpError::Cancelled)), "{out:?}");
    }
}

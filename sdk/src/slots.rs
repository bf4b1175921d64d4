//! A batch's results, filled in as a connector's ERP requests answer.

use crate::{CallError, ConnectorError, Results};

/// One slot per item of a batch. A connector sets each item's result as
/// its ERP answers; an item left without one is answered `unavailable`
/// (so the host retries it) rather than lost.
pub struct Slots<T>(Vec<Option<Result<T, ConnectorError>>>);

impl<T: Clone> Slots<T> {
    /// `n` empty slots.
    pub fn new(n: usize) -> Self {
        Slots(vec![None; n])
    }

    /// Item `i`'s result (an index out of range is ignored).
    pub fn set(&mut self, i: usize, r: Result<T, ConnectorError>) {
        if let Some(s) = self.0.get_mut(i) {
            *s = Some(r);
        }
    }

    /// Whether item `i` has its result.
    pub fn is_set(&self, i: usize) -> bool {
        self.0.get(i).is_some_and(Option::is_some)
    }

    /// Every item still open gets `e`.
    pub fn fill(&mut self, e: &ConnectorError) {
        for s in self.0.iter_mut().filter(|s| s.is_none()) {
            *s = Some(Err(e.clone()));
        }
    }

    /// The batch's answer: one result per item, in order.
    pub fn done(self) -> Results<T> {
        Ok(self
            .0
            .into_iter()
            .map(|s| {
                s.unwrap_or_else(|| {
                    Err(ConnectorError::Unavailable(
                        "the connector gave this item no answer".into(),
                    ))
                })
            })
            .collect())
    }
}

/// The result of a batch of one, for a connector's single-item methods
/// that call its batch methods.
pub fn only<T>(r: Results<T>) -> Result<T, ConnectorError> {
    match r {
        Ok(mut v) if v.len() == 1 => v
            .pop()
            .unwrap_or_else(|| Err(ConnectorError::Unavailable("no result for one item".into()))),
        Ok(v) => Err(ConnectorError::Unavailable(format!(
            "{} results for one item",
            v.len()
        ))),
        Err(CallError::RateLimited(r)) => Err(ConnectorError::RateLimited(r)),
        Err(CallError::Unavailable(m)) => Err(ConnectorError::Unavailable(m)),
        Err(CallError::Unauthorized(m)) => Err(ConnectorError::Unauthorized(m)),
    }
}

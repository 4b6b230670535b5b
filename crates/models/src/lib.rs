//! krxflow's model runtimes. Operators in `pipelines/` use these; this crate knows nothing
//! about DAGs or tables.
//!
//! * [`lexical`]: the embedded sentiment model (linfa multinomial logistic regression over
//!   hashed Korean n-grams), trained and scored without any download.
//! * [`lgbm`]: LightGBM regression and direction models with time-ordered early stopping.

pub mod error;
pub mod lexical;
pub mod lgbm;

pub use error::{ModelError, ModelResult};

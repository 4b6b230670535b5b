//! One Delta commit of actions this lake built itself (the checked append, the compaction),
//! and the table as it stands after it.

use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::protocol::DeltaOperation;

use crate::error::LakeResult;

/// Commits `actions` as `operation` on `table`'s loaded version (Delta's conflict check and
/// `props`' retries decide what may land over commits made since): the table at the
/// committed version.
pub(crate) async fn commit(
    table: DeltaTable,
    actions: Vec<Action>,
    operation: DeltaOperation,
    props: CommitProperties,
) -> LakeResult<DeltaTable> {
    let done = CommitBuilder::from(props)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    let mut table = table;
    if done.metrics.new_checkpoint_created {
        // Rebased on the new checkpoint, as a load of this version is.
        table.update_incremental(Some(done.version())).await?;
    } else {
        // The post-commit step already brought the snapshot to the committed version.
        table.state = Some(done.snapshot());
    }
    Ok(table)
}

//! How data files are written: the Parquet writer properties of every write and compaction.

use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;

/// Rows per Parquet row group. Rows are written in date order, so a date-range read (as of
/// a day, since a day, the rows a merge compares) skips most of a large file by the row
/// groups' statistics instead of decoding all of it.
const ROW_GROUP_ROWS: usize = 16_384;

pub(crate) fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

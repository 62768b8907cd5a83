"""Scores read back: the CSV the scoring outputs write (F.SCORE_COLUMNS: beam_jobs.score's shards,
serving.client's file, a scores table's COPY), as Arrow record batches.
"""

import typing

import pyarrow as pa
from pyarrow import csv as pacsv

from tf_cartola.contract import features as F
from tf_cartola.contract import rows

BLOCK_BYTES = 16 << 20
TYPES = {
    F.ID_KEY: pa.int64(),
    "pro_probability": pa.float64(),
    "model_name": pa.string(),
    "model_version": pa.int64(),
    "run_id": pa.string(),
    F.DECILE: pa.int8(),
    F.LABEL_KEY: pa.float64(),
}


def read_scores(f: typing.BinaryIO, source: str) -> typing.Iterator[pa.RecordBatch]:
    """The scores of one file (or stream), in blocks of about BLOCK_BYTES.

    Raises:
      rows.InputError: not a scores file of this version (a column missing, a value of the wrong
        type, a line with the wrong field count).
    """
    try:
        reader = pacsv.open_csv(
            f,
            read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
            convert_options=pacsv.ConvertOptions(
                column_types=TYPES, include_columns=list(F.SCORE_COLUMNS)
            ),
        )
        yield from reader
    except (pa.ArrowInvalid, KeyError) as e:
        raise rows.InputError(
            f"{source}: not a scores file with the columns {','.join(F.SCORE_COLUMNS)} "
            f"(written by beam_jobs.score or serving.client): {e}"
        ) from None

"""TFRecord framing without TensorFlow: length, masked CRC-32C of the length, data, masked CRC-32C
of the data.
"""

import struct
import typing


class CorruptRecord(ValueError):
    """A record whose framing or checksum is wrong: what follows it in the file cannot be
    trusted.
    """


def _masked_crc32c(data: bytes) -> int:
    import google_crc32c  # A C implementation; installed with apache-beam[gcp].

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frames(records: typing.Iterable[bytes]) -> bytes:
    """Records in TFRecord framing, one after the other."""
    parts = []
    for record in records:
        length = struct.pack("<Q", len(record))
        parts += (
            length,
            struct.pack("<I", _masked_crc32c(length)),
            record,
            struct.pack("<I", _masked_crc32c(record)),
        )
    return b"".join(parts)


def read(f: typing.BinaryIO) -> typing.Iterator[bytes]:
    """The records of a TFRecord stream, checksums checked.

    Raises:
      CorruptRecord: a truncated record or a checksum mismatch (after yielding the good ones).
    """
    index = 0
    while True:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            raise CorruptRecord(f"record {index}: the file ends inside a record header")
        length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
        if _masked_crc32c(length_bytes) != length_crc:
            raise CorruptRecord(
                f"record {index}: the length's checksum does not match (not a TFRecord file?)"
            )
        (length,) = struct.unpack("<Q", length_bytes)
        data, footer = f.read(length), f.read(4)
        if len(data) < length or len(footer) < 4:
            raise CorruptRecord(f"record {index}: the file ends inside the record")
        if _masked_crc32c(data) != struct.unpack("<I", footer)[0]:
            raise CorruptRecord(f"record {index}: the data's checksum does not match")
        yield data
        index += 1

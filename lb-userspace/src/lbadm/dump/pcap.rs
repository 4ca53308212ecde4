//! Classic libpcap files (not pcapng): what `lbadm dump -w` writes and tcpdump, Wireshark and
//! tshark read. Little-endian, microsecond timestamps, Ethernet link type.

use std::io::{self, Write};

/// Magic number of a microsecond-resolution pcap file.
const MAGIC_MICROSECONDS: u32 = 0xa1b2_c3d4;
/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Bytes of the file header, and of each record's header.
const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// Writes a pcap file: the header at once, then one record per [`PcapWriter::write`], each
/// whole, so a file cut short by a signal ends on a whole record once flushed.
pub struct PcapWriter<W: Write> {
    out: W,
    snap_len: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header: Ethernet frames of at most `snap_len` bytes each.
    pub fn new(mut out: W, snap_len: u32) -> io::Result<Self> {
        let mut header = Vec::with_capacity(FILE_HEADER_LEN);
        header.extend_from_slice(&MAGIC_MICROSECONDS.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes()); // GMT offset
        header.extend_from_slice(&0u32.to_le_bytes()); // timestamp accuracy
        header.extend_from_slice(&snap_len.to_le_bytes());
        header.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        Ok(Self { out, snap_len })
    }

    /// One frame: `data` (cut to the snap length) of a frame `frame_len` bytes long, at
    /// `time_ns` since the Unix epoch.
    pub fn write(&mut self, time_ns: u64, frame_len: u32, data: &[u8]) -> io::Result<()> {
        let data = &data[..data.len().min(self.snap_len as usize)];
        let mut record = Vec::with_capacity(RECORD_HEADER_LEN + data.len());
        record.extend_from_slice(&((time_ns / 1_000_000_000) as u32).to_le_bytes());
        record.extend_from_slice(&((time_ns % 1_000_000_000 / 1_000) as u32).to_le_bytes());
        record.extend_from_slice(&(data.len() as u32).to_le_bytes());
        record.extend_from_slice(&frame_len.max(data.len() as u32).to_le_bytes());
        record.extend_from_slice(data);
        self.out.write_all(&record)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A pcap file's header fields and records, as [`read`] finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapFile {
    pub snap_len: u32,
    pub link_type: u32,
    pub records: Vec<PcapRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapRecord {
    /// Since the Unix epoch, to the microsecond.
    pub time_ns: u64,
    /// The frame's length on the wire (`orig_len`).
    pub frame_len: u32,
    /// What the file holds of it.
    pub data: Vec<u8>,
}

/// Reads a little-endian, microsecond pcap file (what [`PcapWriter`] writes). Refuses
/// anything else, and a last record cut short.
pub fn read(bytes: &[u8]) -> Result<PcapFile, String> {
    let word = |at: usize| -> Result<u32, String> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .ok_or_else(|| format!("truncated at byte {at}"))
    };
    if word(0)? != MAGIC_MICROSECONDS {
        return Err(format!(
            "not a little-endian microsecond pcap file: magic {:#x}",
            word(0)?
        ));
    }
    let mut file = PcapFile {
        snap_len: word(16)?,
        link_type: word(20)?,
        records: Vec::new(),
    };
    let mut at = FILE_HEADER_LEN;
    while at < bytes.len() {
        let (seconds, micros, captured, frame_len) = (
            word(at)?,
            word(at + 4)?,
            word(at + 8)? as usize,
            word(at + 12)?,
        );
        let start = at + RECORD_HEADER_LEN;
        let data = bytes
            .get(start..start + captured)
            .ok_or_else(|| format!("record at byte {at} cut short"))?;
        file.records.push(PcapRecord {
            time_ns: u64::from(seconds) * 1_000_000_000 + u64::from(micros) * 1_000,
            frame_len,
            data: data.to_vec(),
        });
        at = start + captured;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a file with one record, field by field.
    #[test]
    fn round_trip_with_the_bytes_libpcap_expects() {
        let mut bytes = Vec::new();
        PcapWriter::new(&mut bytes, 256)
            .unwrap()
            .write(1_700_000_000_123_456_789, 1514, &[0xaa; 300])
            .unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&[0xd4, 0xc3, 0xb2, 0xa1]); // magic, little-endian
        expected.extend_from_slice(&[2, 0, 4, 0]); // version 2.4
        expected.extend_from_slice(&[0; 8]); // GMT offset, accuracy
        expected.extend_from_slice(&[0, 1, 0, 0]); // snap length 256
        expected.extend_from_slice(&[1, 0, 0, 0]); // Ethernet
        expected.extend_from_slice(&1_700_000_000u32.to_le_bytes()); // seconds
        expected.extend_from_slice(&123_456u32.to_le_bytes()); // microseconds
        expected.extend_from_slice(&256u32.to_le_bytes()); // captured: the snap length
        expected.extend_from_slice(&1514u32.to_le_bytes()); // on the wire
        expected.extend_from_slice(&[0xaa; 256]);
        assert_eq!(bytes, expected);
        let file = read(&bytes).unwrap();
        assert_eq!((file.snap_len, file.link_type), (256, LINKTYPE_ETHERNET));
        assert_eq!(
            file.records,
            [PcapRecord {
                time_ns: 1_700_000_000_123_456_000,
                frame_len: 1514,
                data: vec![0xaa; 256],
            }]
        );
        assert!(read(&bytes[..bytes.len() - 1]).is_err());
    }
}

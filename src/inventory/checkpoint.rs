//! A snapshot written to a file and read back, in its packed form: how a
//! router with ten million numbers is routing on them seconds after a
//! restart, instead of minutes of reading them from the database.
//!
//! The file holds the snapshot as it is in memory (the interned names, the
//! shared addresses, each shard's numbers and address arena) behind a
//! header, and ends with a CRC-32 of everything before it. What the
//! snapshot was built from (the database and how far its change log was
//! applied) travels as an opaque `meta` block that the store writes and
//! checks. Every length is checked against what is left of the file, so a
//! cut or damaged file is refused, never half read.
//!
//! Layout (integers little-endian; `bytes` is a u32 length and the bytes):
//! `MAGIC`, format u32, meta bytes, numbers u64, names (u32 count, each
//! bytes), shared addresses (u32 count, each bytes), location codes (u32
//! count, each tenant u32, location u32, index u32), tenant locations
//! (u32 tenants, each name bytes, u32 count, each id bytes and address
//! bytes), odd numbers (u32 count, each an entry), shards (u32 count, each
//! u32 numbers, each key u64 and a 15-byte slot, then its arena bytes),
//! then the CRC-32 u32.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::Arc;

use super::packed::{self, Shard, Slot};
use super::{Address, Capabilities, Inventory, NumberEntry, TenantLocation};

const MAGIC: &[u8; 8] = b"SOSRINV\0";
const FORMAT: u32 = 1;

/// Why a checkpoint file was not read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a snapshot file of this version")]
    Format,
    #[error("damaged: {0}")]
    Damaged(&'static str),
}

/// Writes `inv` with `meta` to `out`.
pub fn write(inv: &Inventory, meta: &[u8], out: impl Write) -> io::Result<()> {
    let mut w = Crc::new(BufWriter::with_capacity(1 << 20, out));
    w.write_all(MAGIC)?;
    w.u32(FORMAT)?;
    w.bytes(meta)?;
    w.u64(inv.len as u64)?;
    let names = inv.names.all();
    w.count(names.len())?;
    for n in names {
        w.bytes(n.as_bytes())?;
    }
    w.count(inv.shared.len())?;
    for code in inv.shared.iter() {
        w.bytes(code)?;
    }
    w.count(inv.location_codes.len())?;
    for (&(t, l), &i) in inv.location_codes.iter() {
        w.u32(t)?;
        w.u32(l)?;
        w.u32(i)?;
    }
    w.count(inv.locations.len())?;
    for (tenant, ls) in inv.locations.iter() {
        w.bytes(tenant.as_bytes())?;
        w.count(ls.len())?;
        for l in ls {
            w.bytes(l.id.as_bytes())?;
            w.bytes(&packed::encode_address(&l.address))?;
        }
    }
    w.count(inv.odd.len())?;
    for e in inv.odd.values() {
        w.entry(e)?;
    }
    w.count(inv.shards.len())?;
    for shard in &inv.shards {
        w.count(shard.len())?;
        for (key, s) in shard.iter() {
            w.u64(key)?;
            w.u32(s.tenant)?;
            w.u32(s.location)?;
            w.u32(s.address)?;
            w.write_all(&s.country)?;
            w.write_all(&[s.flags])?;
        }
        w.bytes(shard.arena())?;
    }
    let crc = w.crc.clone().finalize();
    let mut inner = w.inner;
    inner.write_all(&crc.to_le_bytes())?;
    inner.flush()
}

/// Reads a snapshot and its meta from `input`, `size` bytes long.
pub fn read(input: impl Read, size: u64) -> Result<(Inventory, Vec<u8>), CheckpointError> {
    let mut r = Reader {
        inner: BufReader::with_capacity(1 << 20, input),
        crc: crc32fast::Hasher::new(),
        left: size.checked_sub(4).ok_or(CheckpointError::Format)?,
    };
    let mut magic = [0u8; 8];
    r.exact(&mut magic).map_err(|_| CheckpointError::Format)?;
    if &magic != MAGIC || r.u32()? != FORMAT {
        return Err(CheckpointError::Format);
    }
    let meta = r.bytes()?;
    let len = r.u64()?;
    let mut names = packed::Names::default();
    for _ in 0..r.u32()? {
        let n = r.text()?;
        names.intern(&n);
    }
    let mut shared: Vec<Arc<[u8]>> = Vec::new();
    for _ in 0..r.u32()? {
        shared.push(r.bytes()?.into());
    }
    let mut location_codes = HashMap::new();
    for _ in 0..r.u32()? {
        let (t, l, i) = (r.u32()?, r.u32()?, r.u32()?);
        location_codes.insert((t, l), i);
    }
    let mut locations: HashMap<String, Vec<TenantLocation>> = HashMap::new();
    for _ in 0..r.u32()? {
        let tenant = r.text()?;
        let mut ls = Vec::new();
        for _ in 0..r.u32()? {
            let id = r.text()?;
            let address = r
                .address()?
                .ok_or(CheckpointError::Damaged("a location without an address"))?;
            ls.push(TenantLocation { id, address });
        }
        locations.insert(tenant, ls);
    }
    let mut odd = HashMap::new();
    for _ in 0..r.u32()? {
        let e = r.entry()?;
        odd.insert(e.number.clone(), e);
    }
    if r.u32()? as usize != packed::SHARDS {
        return Err(CheckpointError::Format);
    }
    let mut shards = Vec::with_capacity(packed::SHARDS);
    let mut counted = odd.len() as u64;
    for _ in 0..packed::SHARDS {
        let n = r.u32()? as usize;
        r.need(n as u64 * 23)?;
        let mut raw = vec![0u8; n * 23];
        r.exact(&mut raw)?;
        let entries = raw.chunks_exact(23).map(|c| {
            let u = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            let key = u64::from_le_bytes(c[0..8].try_into().unwrap_or_default());
            let slot = Slot {
                tenant: u(8),
                location: u(12),
                address: u(16),
                country: [c[20], c[21]],
                flags: c[22],
            };
            (key, slot)
        });
        let shard = Shard::from_parts(entries, r.bytes()?);
        counted += shard.len() as u64;
        shards.push(Arc::new(shard));
    }
    if counted != len {
        return Err(CheckpointError::Damaged("the count of numbers differs"));
    }
    if r.left != 0 {
        return Err(CheckpointError::Damaged("bytes after the last shard"));
    }
    let want = r.crc.clone().finalize();
    let mut crc = [0u8; 4];
    r.inner.read_exact(&mut crc)?;
    if u32::from_le_bytes(crc) != want {
        return Err(CheckpointError::Damaged("the checksum differs"));
    }
    let inv = Inventory {
        shards,
        names: Arc::new(names),
        odd: Arc::new(odd),
        locations: Arc::new(locations),
        shared: Arc::new(shared),
        location_codes: Arc::new(location_codes),
        len: len as usize,
    };
    Ok((inv, meta))
}

/// A writer that sums what goes through it.
struct Crc<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Crc<W> {
    fn new(inner: W) -> Self {
        Crc {
            inner,
            crc: crc32fast::Hasher::new(),
        }
    }

    fn u32(&mut self, v: u32) -> io::Result<()> {
        self.write_all(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> io::Result<()> {
        self.write_all(&v.to_le_bytes())
    }

    fn count(&mut self, n: usize) -> io::Result<()> {
        let n =
            u32::try_from(n).map_err(|_| io::Error::other("too many items for a snapshot file"))?;
        self.u32(n)
    }

    fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.count(b.len())?;
        self.write_all(b)
    }

    fn opt(&mut self, b: Option<&[u8]>) -> io::Result<()> {
        match b {
            Some(b) => {
                self.write_all(&[1])?;
                self.bytes(b)
            }
            None => self.write_all(&[0]),
        }
    }

    fn entry(&mut self, e: &NumberEntry) -> io::Result<()> {
        self.bytes(e.number.as_bytes())?;
        self.bytes(e.tenant.as_bytes())?;
        self.bytes(e.country.as_bytes())?;
        let c = e.capabilities;
        let flags = u8::from(e.common_area_phone)
            | u8::from(c.set_address) << 1
            | u8::from(c.change_address) << 2
            | u8::from(c.delete_address) << 3;
        self.write_all(&[flags])?;
        self.opt(e.location_id.as_deref().map(str::as_bytes))?;
        self.opt(e.registered.as_ref().map(packed::encode_address).as_deref())
    }
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that sums what it reads and never reads past the checksum.
struct Reader<R: Read> {
    inner: BufReader<R>,
    crc: crc32fast::Hasher,
    /// Bytes left before the checksum.
    left: u64,
}

impl<R: Read> Reader<R> {
    fn need(&self, n: u64) -> Result<(), CheckpointError> {
        if n > self.left {
            return Err(CheckpointError::Damaged("a length runs past the end"));
        }
        Ok(())
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), CheckpointError> {
        self.need(buf.len() as u64)?;
        self.inner.read_exact(buf)?;
        self.crc.update(buf);
        self.left -= buf.len() as u64;
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, CheckpointError> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    fn u32(&mut self) -> Result<u32, CheckpointError> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, CheckpointError> {
        let mut b = [0u8; 8];
        self.exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, CheckpointError> {
        let n = self.u32()? as usize;
        self.need(n as u64)?;
        let mut v = vec![0u8; n];
        self.exact(&mut v)?;
        Ok(v)
    }

    fn text(&mut self) -> Result<String, CheckpointError> {
        String::from_utf8(self.bytes()?)
            .map_err(|_| CheckpointError::Damaged("a name is not UTF-8"))
    }

    fn address(&mut self) -> Result<Option<Address>, CheckpointError> {
        Ok(packed::decode_address(&self.bytes()?))
    }

    fn opt(&mut self) -> Result<Option<Vec<u8>>, CheckpointError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes()?)),
            _ => Err(CheckpointError::Damaged("a bad option marker")),
        }
    }

    fn entry(&mut self) -> Result<NumberEntry, CheckpointError> {
        let number = self.text()?;
        let tenant = self.text()?;
        let country = self.text()?;
        let flags = self.u8()?;
        let location_id = match self.opt()? {
            Some(b) => Some(
                String::from_utf8(b)
                    .map_err(|_| CheckpointError::Damaged("a location id is not UTF-8"))?,
            ),
            None => None,
        };
        let registered = match self.opt()? {
            Some(b) => {
                Some(packed::decode_address(&b).ok_or(CheckpointError::Damaged("an address"))?)
            }
            None => None,
        };
        Ok(NumberEntry {
            number,
            tenant,
            country,
            common_area_phone: flags & 1 != 0,
            capabilities: Capabilities {
                set_address: flags & 2 != 0,
                change_address: flags & 4 != 0,
                delete_address: flags & 8 != 0,
            },
            location_id,
            registered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pidf::CivicAddress;

    fn address(city: &str) -> Address {
        let mut civic = CivicAddress::new();
        civic.push("country", "US");
        civic.push("A3", city);
        civic.push("{urn:example}floor", "3");
        Address {
            civic,
            point: Some((40.75, -73.99)),
        }
    }

    fn entry(number: &str, tenant: &str) -> NumberEntry {
        NumberEntry {
            number: number.into(),
            tenant: tenant.into(),
            country: "US".into(),
            common_area_phone: number.ends_with('1'),
            capabilities: Capabilities {
                set_address: true,
                change_address: number.ends_with('2'),
                delete_address: false,
            },
            location_id: None,
            registered: Some(address(number)),
        }
    }

    /// Numbers of every kind: an address of their own, one shared with
    /// their tenant location, none, and numbers the packed form cannot
    /// hold (kept whole).
    fn sample() -> Inventory {
        let mut inv = Inventory::empty();
        inv.add_location(
            "acme",
            TenantLocation {
                id: "hq".into(),
                address: address("New York"),
            },
        );
        for i in 0..2000u64 {
            let mut e = entry(
                &format!("+1212555{i:04}"),
                if i % 3 == 0 { "acme" } else { "globex" },
            );
            if i % 3 == 0 && i % 2 == 0 {
                e.location_id = Some("hq".into());
                e.registered = Some(address("New York"));
            }
            if i % 7 == 0 {
                e.registered = None;
            }
            inv.insert(e);
        }
        inv.insert(entry("12345", "acme"));
        let mut odd = entry("+442079460018", "acme");
        odd.country = "GBR".into();
        inv.insert(odd);
        inv
    }

    fn sorted(inv: &Inventory) -> Vec<NumberEntry> {
        let mut v: Vec<NumberEntry> = inv.numbers().collect();
        v.sort_by(|a, b| a.number.cmp(&b.number));
        v
    }

    #[test]
    fn a_snapshot_is_read_back_as_it_was_written() {
        let inv = sample();
        let mut file = Vec::new();
        write(&inv, b"seq=7", &mut file).unwrap();
        let (back, meta) = read(&file[..], file.len() as u64).unwrap();
        assert_eq!(meta, b"seq=7");
        assert_eq!(back.len(), inv.len());
        assert_eq!(sorted(&back), sorted(&inv));
        assert_eq!(back.tenant_locations("acme"), inv.tenant_locations("acme"));
        assert_eq!(back.get("+12125550000"), inv.get("+12125550000"));
        assert_eq!(back.get("12345").map(|e| e.tenant), Some("acme".into()));
        // A change applied to the read snapshot shares addresses as one
        // applied to the written one does.
        let mut e = entry("+12125550006", "acme");
        e.location_id = Some("hq".into());
        e.registered = Some(address("New York"));
        let changes = crate::inventory::Changes {
            numbers: vec![e],
            ..Default::default()
        };
        assert_eq!(
            sorted(&back.with_changes(&changes)),
            sorted(&inv.with_changes(&changes))
        );
    }

    #[test]
    fn a_cut_or_damaged_file_is_refused() {
        let mut file = Vec::new();
        write(&sample(), b"", &mut file).unwrap();
        for cut in [0, 3, 12, file.len() / 2, file.len() - 1] {
            assert!(read(&file[..cut], cut as u64).is_err(), "cut at {cut}");
        }
        for at in [20, file.len() / 3, file.len() - 2] {
            let mut bad = file.clone();
            bad[at] ^= 0x40;
            assert!(
                read(&bad[..], bad.len() as u64).is_err(),
                "byte {at} flipped"
            );
        }
        let mut other = file.clone();
        other[8] = 9;
        assert!(matches!(
            read(&other[..], other.len() as u64),
            Err(CheckpointError::Format)
        ));
        // A length that claims more than the file holds allocates nothing.
        let mut huge = file.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read(&huge[..], huge.len() as u64).is_err());
    }
}

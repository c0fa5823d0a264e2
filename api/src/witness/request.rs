//! The body of `POST /add-checkpoint` (C2SP tlog-witness): `old <size>\n`, at most
//! [`WITNESS_PROOF_HASHES_MAX`] base64 consistency-proof lines, an empty line, then the signed
//! checkpoint note (parsed by the caller).

use ledger::limits::CHECKPOINT_SIZE_DIGITS_MAX;
use ledger::Hash;

use crate::limits::WITNESS_PROOF_HASHES_MAX;

/// A parsed request body; `note` borrows the body's tail.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct AddCheckpoint<'a> {
    /// The size of the checkpoint the client believes the witness cosigned last.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent.
    pub note: &'a [u8],
}

/// Splits the body; the error says what is malformed (answered 400).
pub(super) fn parse(body: &[u8]) -> Result<AddCheckpoint<'_>, String> {
    let (first, mut rest) = split_line(body).ok_or("the body must start with an `old <size>` line")?;
    let digits = first.strip_prefix(b"old ").ok_or("the first line must be `old <size>`")?;
    let old = parse_size(digits).ok_or("the old size must be decimal without leading zeros")?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = split_line(rest).ok_or("no empty line after the consistency proof")?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == WITNESS_PROOF_HASHES_MAX {
            return Err(format!("more than {WITNESS_PROOF_HASHES_MAX} consistency proof lines"));
        }
        let hash = std::str::from_utf8(line)
            .ok()
            .and_then(ledger::b64::decode_hash)
            .ok_or_else(|| format!("consistency proof line {} is not base64 of 32 bytes", proof.len() + 1))?;
        proof.push(hash);
    }
    if rest.is_empty() {
        return Err("no checkpoint after the empty line".into());
    }
    Ok(AddCheckpoint { old, proof, note: rest })
}

/// The line before the first `\n` and what follows it; `None` without a newline.
fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    Some((&bytes[..end], &bytes[end + 1..]))
}

/// A tree size as tlog-witness writes it: ASCII decimal, no leading zeros (`0` alone).
fn parse_size(digits: &[u8]) -> Option<u64> {
    let valid = !digits.is_empty()
        && digits.len() <= CHECKPOINT_SIZE_DIGITS_MAX
        && digits.iter().all(u8::is_ascii_digit)
        && (digits == b"0" || digits[0] != b'0');
    valid.then(|| std::str::from_utf8(digits).ok()?.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

    #[test]
    fn parses_the_old_size_the_proof_and_the_note() {
        let body = format!("old 20852014\n{HASH}\n{HASH}\n\nnote\n\n— sig\n");
        let parsed = parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.old, 20852014);
        assert_eq!(parsed.proof, vec![[7u8; 32]; 2]);
        assert_eq!(parsed.note, "note\n\n— sig\n".as_bytes());
        let empty_proof = parse(b"old 0\n\nnote\n").unwrap();
        assert_eq!((empty_proof.old, empty_proof.proof.len()), (0, 0));
    }

    #[test]
    fn refuses_malformed_bodies() {
        let too_long = format!("old 1\n{}\nnote\n", format!("{HASH}\n").repeat(WITNESS_PROOF_HASHES_MAX + 1));
        let longest = format!("old 1\n{}\nnote\n", format!("{HASH}\n").repeat(WITNESS_PROOF_HASHES_MAX));
        assert_eq!(parse(longest.as_bytes()).unwrap().proof.len(), WITNESS_PROOF_HASHES_MAX);
        for bad in [
            "",
            "old 1",
            "old 1\n",
            "old 1\nnote\n",
            "old 01\n\nnote\n",
            "old -1\n\nnote\n",
            "old  1\n\nnote\n",
            "old 1 \n\nnote\n",
            "new 1\n\nnote\n",
            "old 99999999999999999999\n\nnote\n",
            "old 1\nBwcHBwcH\n\nnote\n",
            "old 1\n\n",
            too_long.as_str(),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}

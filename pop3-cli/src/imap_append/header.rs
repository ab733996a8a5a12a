//! The header fields of a message (RFC 5322 §2.2), as the internal date and the identity of
//! an appended message read them.

/// The header fields of `message` as (name, unfolded value), in order: up to the first empty
/// line; a line that starts with white space continues the field before it (unfolding only
/// removes the line break, RFC 5322 §2.2.3); a line without `:` is skipped. Names are
/// trimmed (the obsolete syntax allows white space before the colon).
pub(super) fn fields(message: &[u8]) -> Vec<(&[u8], Vec<u8>)> {
    let mut fields: Vec<(&[u8], Vec<u8>)> = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break; // the end of the header section
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = fields.last_mut() {
                value.extend_from_slice(line);
            }
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            fields.push((line[..colon].trim_ascii(), line[colon + 1..].to_vec()));
        }
    }
    fields
}

/// The unfolded value of the first field `name` (names match case-insensitively).
pub(super) fn first(message: &[u8], name: &str) -> Option<Vec<u8>> {
    fields(message)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, value)| value)
}

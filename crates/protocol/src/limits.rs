//! Protocol limits and the validation rules for names and rooms.
//!
//! "Characters" are Unicode scalar values (Rust `char`s), counted after
//! trimming surrounding whitespace. Browsers count UTF-16 code units, which is
//! never fewer, so a client that checks `string.length` is always at least as
//! strict as the server.

/// Longest chat text, in characters after trimming.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest `client_id`, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 64;
/// Longest display name, in characters after trimming.
pub const MAX_NAME_CHARS: usize = 32;
/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 64;
/// At most this many names are listed in a `welcome`; `num_participants`
/// always has the true count. Keeps a join into a huge room O(1) in size.
pub const MAX_PARTICIPANTS_LISTED: usize = 200;
/// Most messages one `history` request (or `GET /rooms/{room}/messages`) returns.
pub const MAX_HISTORY_PAGE: u32 = 100;
/// Longest epoch a client may send back in `since`; the server's are 16.
pub const MAX_EPOCH_CHARS: usize = 64;
/// Longest token (`refresh`, `/ws?token=`, `Authorization: Bearer`), in
/// bytes. A signed JWT with a few claims is 200 to 1,000 bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Largest integer accepted for `sent_at` and `nonce`: 2^53, the largest
/// integer a JavaScript number holds exactly.
pub const MAX_INTEGER: u64 = 1 << 53;

/// Checks and normalises a display name: 1 to 32 characters after trimming,
/// no control characters. Returns the trimmed name or a sentence saying why not.
pub fn validate_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 {
        return Err("A name needs at least one visible character.".into());
    }
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "A name has at most {MAX_NAME_CHARS} characters; this one has {chars}."
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("A name cannot contain control characters.".into());
    }
    Ok(name)
}

/// Checks a room name: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
pub fn validate_room(room: &str) -> Result<&str, String> {
    if room.is_empty() || room.len() > MAX_ROOM_CHARS {
        return Err(format!(
            "A room name has 1 to {MAX_ROOM_CHARS} characters; this one has {}.",
            room.chars().count()
        ));
    }
    if !room
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("A room name may only use letters A-Z and a-z, digits, '_' and '-'.".into());
    }
    Ok(room)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(validate_name("  ada  "), Ok("ada"));
        assert_eq!(validate_name(&"é".repeat(32)).map(str::len), Ok(64));
        assert!(validate_name(&"é".repeat(33)).is_err());
        assert!(validate_name("   ").is_err());
        assert!(validate_name("a\u{7}b").is_err());
        assert!(validate_name("a\nb").is_err());
    }

    #[test]
    fn rooms() {
        assert_eq!(validate_room("rust-2024_x"), Ok("rust-2024_x"));
        assert!(validate_room("").is_err());
        assert!(validate_room("has space").is_err());
        assert!(validate_room("ünï").is_err());
        assert!(validate_room(&"a".repeat(65)).is_err());
        assert!(validate_room(&"a".repeat(64)).is_ok());
    }
}

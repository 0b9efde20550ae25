//! The PostgreSQL probe: connect as every handler does ([`Db::connect`], the Spin
//! variable `database_url`), then run `select 1`.

use arena_common::db::{DATABASE_URL, Db, Row};

use super::{Verdict, redact};

pub(super) async fn probe() -> Verdict {
    // Read here only to keep the address, and the password in it, out of the reason:
    // the error texts come from the host, and no host promises to leave them out.
    let address = spin_sdk::variables::get(DATABASE_URL)
        .await
        .unwrap_or_default();
    let secrets = secrets(&address);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    select_one()
        .await
        .map_err(|reason| redact(&reason, &secrets))
}

async fn select_one() -> Result<(), String> {
    let db = Db::connect().await.map_err(|problem| {
        // The cause says what failed ("connecting: ... Connection refused"); the detail
        // only that something did.
        problem.cause().unwrap_or(problem.detail()).to_owned()
    })?;
    db.query_one::<Row>("select 1", &[])
        .await
        .map_err(|error| error.to_string())?;
    Ok(())
}

/// What of a PostgreSQL address must never be shown: the address itself, and its
/// password in every form a client might quote it (as written, percent-decoded, from
/// the URL's user info or a `password=` parameter, URL or key-value style).
fn secrets(address: &str) -> Vec<String> {
    let address = address.trim();
    let mut secrets = vec![address.to_owned()];
    if let Some((_, rest)) = address.split_once("://") {
        let authority = rest.split(['?', '#']).next().unwrap_or_default();
        if let Some((user_info, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = user_info.split_once(':')
        {
            secrets.push(password.to_owned());
        }
    }
    for (at, _) in address.match_indices("password=") {
        let value = &address[at + "password=".len()..];
        let value = match value.strip_prefix('\'') {
            Some(quoted) => quoted.split('\'').next(),
            None => value.split(['&', ' ', '#']).next(),
        };
        secrets.extend(value.map(str::to_owned));
    }
    let decoded: Vec<String> = secrets
        .iter()
        .map(|secret| percent_decode(secret))
        .collect();
    secrets.extend(decoded);
    secrets.retain(|secret| !secret.is_empty());
    secrets.sort();
    secrets.dedup();
    secrets
}

/// `%XX` sequences decoded (invalid ones left as they are); lossy for non-UTF-8.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubbed(address: &str, reason: &str) -> String {
        let secrets = secrets(address);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        redact(reason, &secrets)
    }

    #[test]
    fn the_password_in_the_user_info_is_a_secret_as_written_and_decoded() {
        let address = "postgres://arena:p%40ss:w0rd@db.internal:5432/arena?sslmode=disable";
        let secrets = secrets(address);
        assert!(secrets.contains(&"p%40ss:w0rd".to_owned()), "{secrets:?}");
        assert!(secrets.contains(&"p@ss:w0rd".to_owned()), "{secrets:?}");
        assert!(secrets.contains(&address.to_owned()), "{secrets:?}");
    }

    #[test]
    fn a_password_parameter_is_a_secret_in_url_and_key_value_form() {
        for (address, password) in [
            (
                "postgres://arena@db/arena?password=hunter2&sslmode=disable",
                "hunter2",
            ),
            (
                "host=db user=arena password=hunter2 dbname=arena",
                "hunter2",
            ),
            (
                "host=db user=arena password='hunter 2' dbname=arena",
                "hunter 2",
            ),
        ] {
            assert!(secrets(address).contains(&password.to_owned()), "{address}");
        }
    }

    #[test]
    fn an_address_without_a_password_has_only_itself_to_hide() {
        let address = "postgres://postgres@127.0.0.1:5432/arena?sslmode=disable";
        assert_eq!(secrets(address), [address]);
        assert!(secrets("").is_empty());
    }

    #[test]
    fn no_reason_quotes_the_address_or_its_password() {
        let address = "postgres://arena:s3cret@db:5432/arena";
        assert_eq!(
            scrubbed(address, &format!("invalid address {address}")),
            "invalid address ***"
        );
        assert_eq!(
            scrubbed(address, "password authentication failed (tried \"s3cret\")"),
            "password authentication failed (tried \"***\")"
        );
        assert_eq!(
            scrubbed(address, "connecting: Connection refused (os error 111)"),
            "connecting: Connection refused (os error 111)"
        );
    }

    #[test]
    fn percent_decoding_leaves_invalid_sequences_alone() {
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}

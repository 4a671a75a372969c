//! Where a node is and how to log in: `redis://[user:pass@]host:port[/db]`, `rediss://…`.
//!
//! Invariants: a parsed endpoint came from a URL with nothing this module would ignore (no
//! query parameters, no fragment, a path that is empty or a database number in digits), so
//! what a user wrote is what is used; `Display` writes a URL that parses back to the same
//! node (an IPv6 host in brackets) and never the password.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// One Redis node's address and login.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `rediss://`: TLS.
    pub tls: bool,
    /// Host name or IP address.
    pub host: String,
    /// TCP port (6379 by default).
    pub port: u16,
    /// ACL user, when given.
    pub username: Option<String>,
    /// Password, when given.
    pub password: Option<String>,
    /// Database number (`/db`), 0 by default.
    pub database: u32,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password never reaches logs.
        write!(f, "{self}")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://")?;
        match (&self.username, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:***@")?,
            (None, Some(_)) => write!(f, ":***@")?,
            (Some(user), None) => write!(f, "{user}@")?,
            (None, None) => {}
        }
        write!(f, "{}", self.address())?;
        if self.database != 0 {
            write!(f, "/{}", self.database)?;
        }
        Ok(())
    }
}

impl Endpoint {
    /// `host:port`, an IPv6 host in brackets (`[::1]:6379`): the server this endpoint
    /// reaches, as a user writes it.
    #[must_use]
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether `other` names the same server in the same words: one host (case aside) and
    /// port. The database, login and TLS do not matter: they are one server's keyspaces and
    /// doors, and a lock's quorum counts servers.
    #[must_use]
    pub fn same_address(&self, other: &Endpoint) -> bool {
        self.port == other.port && self.host.eq_ignore_ascii_case(&other.host)
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::BadUrl {
            url: redact(text),
            why: why.to_owned(),
        };
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(bad(&format!(
                    "scheme '{other}' is not redis:// or rediss://"
                )));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let username = Some(url.username()).filter(|u| !u.is_empty()).map(decode);
        let password = url.password().map(decode);
        // Options a URL may carry elsewhere (`?timeout=…`, `?protocol=…`) are not read here:
        // refusing them says so, where ignoring them would run with settings the user
        // believes are different.
        if let Some((key, _)) = url.query_pairs().next() {
            return Err(bad(&format!(
                "unknown query parameter '{key}' (none are read: set timeouts and TLS with the command's options or ConnectOptions)"
            )));
        }
        if url.query().is_some() {
            return Err(bad("unexpected '?' (no query parameters are read)"));
        }
        if url.fragment().is_some() {
            return Err(bad("unexpected '#' fragment"));
        }
        let database = match url.path().strip_prefix('/').unwrap_or(url.path()) {
            "" => 0,
            db if db.bytes().all(|b| b.is_ascii_digit()) => db
                .parse()
                .map_err(|_| bad("the database number is too large"))?,
            db => {
                return Err(bad(&format!(
                    "the path '/{db}' is not a database number (write /2 for database 2)"
                )));
            }
        };
        Ok(Endpoint {
            tls,
            host,
            port: url.port().unwrap_or(6379),
            username,
            password,
            database,
        })
    }
}

/// The URL with any password replaced, for error messages.
fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        let e: Endpoint = "redis://localhost".parse().unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.database),
            (false, "localhost", 6379, 0)
        );
        let e: Endpoint = "rediss://app:p%40ss@10.0.0.1:6380/3".parse().unwrap();
        assert!(e.tls);
        assert_eq!(e.username.as_deref(), Some("app"));
        assert_eq!(e.password.as_deref(), Some("p@ss"));
        assert_eq!((e.port, e.database), (6380, 3));
        let e: Endpoint = "redis://:secret@[::1]:7000".parse().unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.username, None);
        assert_eq!(e.password.as_deref(), Some("secret"));
    }

    #[test]
    fn errors_say_what_is_wrong_and_hide_the_password() {
        let err = "http://u:hunter2@h"
            .parse::<Endpoint>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("scheme 'http'"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!("redis://h/x".parse::<Endpoint>().is_err());
        assert!("not a url".parse::<Endpoint>().is_err());
        let shown = "redis://u:hunter2@h:1".parse::<Endpoint>().unwrap();
        assert!(!format!("{shown} {shown:?}").contains("hunter2"));
    }

    #[test]
    fn ipv6_hosts_print_in_brackets() {
        let e: Endpoint = "redis://[::1]:7000/2".parse().unwrap();
        assert_eq!(e.to_string(), "redis://[::1]:7000/2");
        assert_eq!(e.address(), "[::1]:7000");
        let again: Endpoint = e.to_string().parse().unwrap();
        assert_eq!(again, e);
        let e: Endpoint = "rediss://u:pw@[fd00::2]".parse().unwrap();
        assert_eq!(format!("{e:?}"), "rediss://u:***@[fd00::2]:6379");
        let e: Endpoint = "redis://127.0.0.1:7000".parse().unwrap();
        assert_eq!(e.address(), "127.0.0.1:7000");
    }

    #[test]
    fn query_parameters_and_odd_paths_are_refused() {
        for (url, says) in [
            (
                "redis://h:1/0?timeout=1",
                "unknown query parameter 'timeout'",
            ),
            (
                "redis://h:1?protocol=3",
                "unknown query parameter 'protocol'",
            ),
            ("redis://h:1/?", "unexpected '?'"),
            ("redis://h:1/0#x", "fragment"),
            ("redis://h:1/+1", "'/+1' is not a database number"),
            ("redis://h:1/0/1", "'/0/1' is not a database number"),
            ("redis://h:1/db0", "'/db0' is not a database number"),
            ("redis://h:1/99999999999", "too large"),
        ] {
            let err = url.parse::<Endpoint>().unwrap_err();
            assert!(matches!(err, Error::BadUrl { .. }), "{url}: {err:?}");
            assert!(err.to_string().contains(says), "{url}: {err}");
        }
        for (url, db) in [
            ("redis://h:1/", 0),
            ("redis://h:1/15", 15),
            ("redis://h:1", 0),
        ] {
            assert_eq!(url.parse::<Endpoint>().unwrap().database, db, "{url}");
        }
    }

    #[test]
    fn the_same_address_ignores_case_database_and_login() {
        let a: Endpoint = "redis://Redis-A:7000/1".parse().unwrap();
        let b: Endpoint = "rediss://u:p@redis-a:7000/2".parse().unwrap();
        let c: Endpoint = "redis://redis-a:7001".parse().unwrap();
        assert!(a.same_address(&b));
        assert!(!a.same_address(&c));
    }
}

//! Where a node is and how to log in: `redis://[user:pass@]host:port[/db]`, `rediss://…`.

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
        write!(f, "{}:{}", self.host, self.port)?;
        if self.database != 0 {
            write!(f, "/{}", self.database)?;
        }
        Ok(())
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
        let database = match url.path().trim_start_matches('/') {
            "" => 0,
            db => db
                .parse()
                .map_err(|_| bad("the path must be a database number, as in /2"))?,
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
}

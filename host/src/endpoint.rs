//! Where a node is and how to log in: `redis://[user:pass@]host:port[/db]`, `rediss://…`,
//! and a Redis Cluster reached through seed nodes:
//! `redis+cluster://[user:pass@]host:port[,host:port…]` (`rediss+cluster://` for TLS), which
//! counts as one node of a lock.
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
    /// Database number (`/db`), 0 by default (always 0 for a cluster).
    pub database: u32,
    /// `redis+cluster://`: a Redis Cluster, of which `host:port` is the first seed node.
    pub cluster: bool,
    /// A cluster's further seed nodes (host, port), tried in order after the first.
    pub more_seeds: Vec<(String, u16)>,
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
        let cluster = if self.cluster { "+cluster" } else { "" };
        write!(f, "{scheme}{cluster}://")?;
        match (&self.username, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:***@")?,
            (None, Some(_)) => write!(f, ":***@")?,
            (Some(user), None) => write!(f, "{user}@")?,
            (None, None) => {}
        }
        write!(f, "{}", self.address())?;
        for (host, port) in &self.more_seeds {
            write!(f, ",{}", host_port(host, *port))?;
        }
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
        host_port(&self.host, self.port)
    }

    /// Every seed node of a cluster (host, port), the first one first; a plain node's own.
    #[must_use]
    pub fn seeds(&self) -> Vec<(String, u16)> {
        let mut seeds = vec![(self.host.clone(), self.port)];
        seeds.extend(self.more_seeds.iter().cloned());
        seeds
    }

    /// This endpoint's login and TLS at another server: a cluster's seed or primary.
    #[must_use]
    pub fn at(&self, host: &str, port: u16) -> Endpoint {
        Endpoint {
            tls: self.tls,
            host: host.to_owned(),
            port,
            username: self.username.clone(),
            password: self.password.clone(),
            database: 0,
            cluster: false,
            more_seeds: Vec::new(),
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
        if let Some((scheme, rest)) = text.split_once("://")
            && scheme.ends_with("+cluster")
        {
            return parse_cluster(scheme, rest).map_err(|why| bad(&why));
        }
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(bad(&format!(
                    "scheme '{other}' is not redis://, rediss://, redis+cluster:// or rediss+cluster://"
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
            cluster: false,
            more_seeds: Vec::new(),
        })
    }
}

/// `host:port`, an IPv6 host in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Reads what follows `redis+cluster://` / `rediss+cluster://`: an optional login, then
/// comma-separated seed nodes, each `host[:port]` (6379 by default; an IPv6 host in
/// brackets), then nothing or `/0` — a cluster has database 0 only. Query parameters
/// (redis-py's and go-redis's `?addr=`, timeouts) are refused, as for single nodes.
fn parse_cluster(scheme: &str, rest: &str) -> Result<Endpoint, String> {
    let tls = match scheme {
        "redis+cluster" => false,
        "rediss+cluster" => true,
        other => {
            return Err(format!(
                "scheme '{other}' is not redis+cluster:// or rediss+cluster://"
            ));
        }
    };
    if rest.contains('#') {
        return Err("unexpected '#' fragment".into());
    }
    if let Some((_, query)) = rest.split_once('?') {
        let key = query.split(['=', '&']).next().unwrap_or_default();
        return Err(if key.is_empty() {
            "unexpected '?' (no query parameters are read)".into()
        } else {
            format!(
                "unknown query parameter '{key}' (none are read: list the seed nodes as host:port,host:port)"
            )
        });
    }
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    match path {
        "" | "/" | "/0" => {}
        db if db[1..].bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!("a cluster has only database 0, not '{}'", &db[1..]));
        }
        db => return Err(format!("the path '{db}' is not a database number")),
    }
    let (login, hosts) = match authority.rsplit_once('@') {
        Some((login, hosts)) => (Some(login), hosts),
        None => (None, authority),
    };
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (username, password) = match login {
        None => (None, None),
        Some(login) => match login.split_once(':') {
            Some((user, pass)) => (
                Some(user).filter(|u| !u.is_empty()).map(decode),
                Some(decode(pass)),
            ),
            None => (Some(login).filter(|u| !u.is_empty()).map(decode), None),
        },
    };
    if hosts.is_empty() {
        return Err("no seed nodes (write redis+cluster://host:port[,host:port…])".into());
    }
    let mut seeds = Vec::new();
    for seed in hosts.split(',') {
        seeds.push(parse_seed(seed)?);
    }
    for (i, seed) in seeds.iter().enumerate() {
        if seeds[..i]
            .iter()
            .any(|s| s.1 == seed.1 && s.0.eq_ignore_ascii_case(&seed.0))
        {
            return Err(format!(
                "the seed node {} is given twice",
                host_port(&seed.0, seed.1)
            ));
        }
    }
    let (host, port) = seeds.remove(0);
    Ok(Endpoint {
        tls,
        host,
        port,
        username,
        password,
        database: 0,
        cluster: true,
        more_seeds: seeds,
    })
}

/// One seed node, `host[:port]` or `[v6]:port`.
fn parse_seed(seed: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = seed.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("the seed '{seed}' has no closing ']'"))?;
        match after {
            "" => (host, None),
            port => (
                host,
                Some(port.strip_prefix(':').ok_or_else(|| {
                    format!("the seed '{seed}' has something after ']' that is not :port")
                })?),
            ),
        }
    } else {
        match seed.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (seed, None),
        }
    };
    if host.is_empty() {
        return Err(format!("an empty host in the seed list ('{seed}')"));
    }
    if host.contains(['/', '@', ' ']) {
        return Err(format!("the host '{host}' is not a host name or address"));
    }
    let port = match port {
        None => 6379,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("the port '{port}' of seed '{seed}' is not a port (1-65535)"))?,
    };
    Ok((host.to_owned(), port))
}

/// The URL with any password replaced, for error messages.
fn redact(text: &str) -> String {
    if let Some((scheme, rest)) = text.split_once("://")
        && scheme.ends_with("+cluster")
    {
        // The login is everything before the last '@' of the seed list.
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if let Some((login, _)) = authority.rsplit_once('@')
            && let Some((user, _)) = login.split_once(':')
        {
            return text.replacen(login, &format!("{user}:***"), 1);
        }
        return text.to_owned();
    }
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
    fn cluster_urls_list_seeds_and_count_as_one_node() {
        let e: Endpoint = "redis+cluster://u:p%40ss@10.0.0.1:7000,node-b,[::1]:7002"
            .parse()
            .unwrap();
        assert!(e.cluster && !e.tls);
        assert_eq!(
            e.seeds(),
            vec![
                ("10.0.0.1".to_owned(), 7000),
                ("node-b".to_owned(), 6379),
                ("::1".to_owned(), 7002)
            ]
        );
        assert_eq!(
            (e.username.as_deref(), e.password.as_deref()),
            (Some("u"), Some("p@ss"))
        );
        assert_eq!(
            e.to_string(),
            "redis+cluster://u:***@10.0.0.1:7000,node-b:6379,[::1]:7002"
        );
        let e: Endpoint = "rediss+cluster://h:1/0".parse().unwrap();
        assert!(e.cluster && e.tls);
        assert_eq!(e.at("x", 2).to_string(), "rediss://x:2");
        let again: Endpoint = "redis+cluster://a:1,b:2".parse().unwrap();
        assert_eq!(again.to_string().parse::<Endpoint>().unwrap(), again);
    }

    #[test]
    fn bad_cluster_urls_say_what_is_wrong_and_hide_the_password() {
        for (url, says) in [
            ("redis+cluster://", "no seed nodes"),
            ("redis+cluster://u:pw@", "no seed nodes"),
            ("redis+cluster://a:1,,b:2", "empty host"),
            ("redis+cluster://:7000", "empty host"),
            ("redis+cluster://a:70000", "not a port"),
            ("redis+cluster://a:0", "not a port"),
            ("redis+cluster://a:x", "not a port"),
            ("redis+cluster://a:1/2", "only database 0"),
            ("redis+cluster://a:1/db", "not a database number"),
            (
                "redis+cluster://a:1?addr=b:2",
                "unknown query parameter 'addr'",
            ),
            (
                "redis+cluster://a:1/0?timeout=1",
                "unknown query parameter 'timeout'",
            ),
            ("redis+cluster://a:1#x", "fragment"),
            ("redis+cluster://a:1,A:1", "given twice"),
            ("redis+cluster://[::1:1", "no closing"),
            ("redis+sentinel+cluster://a:1", "not redis+cluster"),
            ("redis+cluster://u:hunter2@a:1/5", "only database 0"),
        ] {
            let err = url.parse::<Endpoint>().unwrap_err();
            assert!(matches!(err, Error::BadUrl { .. }), "{url}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(says), "{url}: {text}");
            assert!(!text.contains("hunter2"), "{url}: {text}");
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

//! The `healthcheck` subcommand: the image has no curl, so the binary probes itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

/// How long the probe waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where to reach a server that listens on `listen`: a wildcard address becomes loopback.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// GETs `http://<listen>/health`; exit 0 on a 2xx answer, 1 otherwise.
pub fn run(program: &str, listen: SocketAddr) -> ExitCode {
    let url = format!("http://{}/health", probe_addr(listen));
    let outcome = actix_rt::System::new().block_on(async {
        let client = awc::Client::builder().timeout(PROBE_TIMEOUT).finish();
        match client.get(&url).send().await {
            Ok(res) if res.status().is_success() => Ok(()),
            Ok(res) => Err(format!("{url} answered {}", res.status())),
            Err(e) => Err(format!("{url}: {e}")),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("{program}: unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_becomes_loopback() {
        assert_eq!(
            probe_addr("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            probe_addr("[::]:9".parse().unwrap()),
            "[::1]:9".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            probe_addr("10.1.2.3:1".parse().unwrap()),
            "10.1.2.3:1".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let port = crate::testkit::free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert_eq!(run("test", addr), ExitCode::FAILURE);
    }
}

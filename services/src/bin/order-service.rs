//! The order-service binary; everything lives in [`services::server`].

fn main() -> std::process::ExitCode {
    services::server::main(services::Service::Order)
}

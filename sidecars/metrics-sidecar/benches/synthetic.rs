//! Realistic expositions of a chosen size, for the relabeling benchmarks.
//!
//! A mix like a busy web service's: counters with method/route/status labels,
//! histograms with twelve buckets, gauges, and a summary, with some escaped values.

use std::fmt::Write;

/// An exposition in format 0.0.4 holding exactly `samples` samples.
pub fn exposition(samples: usize) -> String {
    let mut out = String::with_capacity(samples * 110);
    let mut written = 0;
    let mut family = 0;
    let buckets = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    while written < samples {
        let left = samples - written;
        match family % 4 {
            0 => {
                let _ = writeln!(
                    out,
                    "# HELP app_requests_{family}_total Requests answered, by route and status."
                );
                let _ = writeln!(out, "# TYPE app_requests_{family}_total counter");
                for i in 0..left.min(60) {
                    let _ = writeln!(
                        out,
                        "app_requests_{family}_total{{method=\"{}\",route=\"/api/v1/items/{{id}}/{}\",status=\"{}\"}} {}",
                        ["GET", "POST", "PUT"][i % 3],
                        i / 3,
                        [200, 404, 500][i % 3],
                        i * 7919 + family
                    );
                    written += 1;
                }
            }
            1 => {
                let _ = writeln!(
                    out,
                    "# HELP app_latency_{family}_seconds Time to answer a request."
                );
                let _ = writeln!(out, "# TYPE app_latency_{family}_seconds histogram");
                let mut series = 0;
                while samples - written >= buckets.len() + 2 && series < 5 {
                    for (j, le) in buckets.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            "app_latency_{family}_seconds_bucket{{route=\"/api/v1/items/{series}\",le=\"{le}\"}} {}",
                            j * 31 + series
                        );
                    }
                    let _ = writeln!(out, "app_latency_{family}_seconds_sum{{route=\"/api/v1/items/{series}\"}} 1234.5678");
                    let _ = writeln!(
                        out,
                        "app_latency_{family}_seconds_count{{route=\"/api/v1/items/{series}\"}} {}",
                        400 + series
                    );
                    written += buckets.len() + 2;
                    series += 1;
                }
            }
            2 => {
                let _ = writeln!(
                    out,
                    "# HELP app_queue_{family}_depth Items waiting, by queue."
                );
                let _ = writeln!(out, "# TYPE app_queue_{family}_depth gauge");
                for i in 0..left.min(20) {
                    let _ = writeln!(
                        out,
                        "app_queue_{family}_depth{{queue=\"q{i}\",note=\"say \\\"hi\\\", {{ok}}\"}} {}.25",
                        i
                    );
                    written += 1;
                }
            }
            _ => {
                let _ = writeln!(out, "# HELP app_size_{family}_bytes Sizes of payloads.");
                let _ = writeln!(out, "# TYPE app_size_{family}_bytes summary");
                if left >= 5 {
                    for q in ["0.5", "0.9", "0.99"] {
                        let _ = writeln!(out, "app_size_{family}_bytes{{quantile=\"{q}\"}} NaN");
                    }
                    let _ = writeln!(out, "app_size_{family}_bytes_sum 8.5e6");
                    let _ = writeln!(out, "app_size_{family}_bytes_count 1000 1700000000000");
                    written += 5;
                } else {
                    for i in 0..left {
                        let _ = writeln!(out, "app_size_{family}_bytes{{quantile=\"0.{i}\"}} 1");
                        written += 1;
                    }
                }
            }
        }
        family += 1;
    }
    out
}

//! Prometheus metrics (OpenMetrics text at `GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpawnLabels {
    pub profile: String,
    /// warm or cold
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub profile: String,
    /// zygote or python
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProfileLabels {
    pub profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn compile_time() -> Histogram {
    // 5 µs .. ~160 ms
    Histogram::new(exponential_buckets(0.000005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub spawn: HistogramFamily<SpawnLabels>,
    pub pool_ready: Family<PoolLabels, Gauge>,
    pub pool_target: Family<PoolLabels, Gauge>,
    pub pool_refills: Family<PoolLabels, Counter>,
    pub pool_replaced: Family<PoolLabels, Counter>,
    pub pool_served: Family<PoolLabels, Counter>,
    pub pool_missed: Family<PoolLabels, Counter>,
    pub sandboxes_active: Gauge,
    pub policy_compile: HistogramFamily<ProfileLabels>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_errors: Family<EndpointLabels, Counter>,
    /// Requests past auth and rate limit and not yet ended (answered or
    /// disconnected): what a drain waits for.
    pub requests_in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("phantom");
        let spawn: HistogramFamily<SpawnLabels> = Family::new_with_constructor(latency);
        registry.register(
            "spawn_seconds",
            "Time from a run request until the command is executing, by profile and path (warm: a pooled zygote; cold: a zygote made for the request)",
            spawn.clone(),
        );
        let pool_ready = Family::<PoolLabels, Gauge>::default();
        registry.register("pool_ready", "Zygotes ready to serve", pool_ready.clone());
        let pool_target = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_target",
            "Pool size the daemon aims for (follows demand within min..max, the memory budget and pressure)",
            pool_target.clone(),
        );
        let pool_refills = Family::<PoolLabels, Counter>::default();
        registry.register(
            "pool_refills",
            "Zygotes made to refill a pool",
            pool_refills.clone(),
        );
        let pool_replaced = Family::<PoolLabels, Counter>::default();
        registry.register(
            "pool_replaced",
            "Zygotes that died while pooled and were replaced",
            pool_replaced.clone(),
        );
        let pool_served = Family::<PoolLabels, Counter>::default();
        registry.register(
            "pool_served",
            "Requests a pooled zygote served (warm)",
            pool_served.clone(),
        );
        let pool_missed = Family::<PoolLabels, Counter>::default();
        registry.register(
            "pool_missed",
            "Requests for the pool that found no zygote ready (or being made in time) and went cold",
            pool_missed.clone(),
        );
        let sandboxes_active = Gauge::default();
        registry.register(
            "sandboxes_active",
            "Sandboxes running a request or kept for a client",
            sandboxes_active.clone(),
        );
        let policy_compile: HistogramFamily<ProfileLabels> =
            Family::new_with_constructor(compile_time);
        registry.register(
            "policy_compile_seconds",
            "Time to get a profile's compiled policy (compile, or load from the AOT cache)",
            policy_compile.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "API requests by endpoint and status code",
            requests.clone(),
        );
        let request_errors = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "request_errors",
            "API requests that ended in an error status (4xx, 5xx)",
            request_errors.clone(),
        );
        let requests_in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "API requests being served (a client that hangs up ends its request)",
            requests_in_flight.clone(),
        );
        Metrics {
            registry,
            spawn,
            pool_ready,
            pool_target,
            pool_refills,
            pool_replaced,
            pool_served,
            pool_missed,
            sandboxes_active,
            policy_compile,
            requests,
            request_errors,
            requests_in_flight,
        }
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    pub fn pool(profile: &str, kind: &str) -> PoolLabels {
        PoolLabels {
            profile: profile.to_string(),
            kind: kind.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_families() {
        let m = Metrics::new();
        m.spawn
            .get_or_create(&SpawnLabels {
                profile: "p".into(),
                path: "warm".into(),
            })
            .observe(0.002);
        m.sandboxes_active.set(2);
        let t = m.encode();
        assert!(t.contains("phantom_spawn_seconds_bucket{"), "{t}");
        assert!(t.contains("path=\"warm\""), "{t}");
        assert!(t.contains("phantom_sandboxes_active 2"), "{t}");
        assert!(t.ends_with("# EOF\n"), "{t}");
    }
}

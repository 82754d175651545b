//! systemd's manager over D-Bus: start, change and stop a transient unit.
//!
//! The system bus first (`/run/dbus/system_bus_socket`), then systemd's
//! own private socket (`/run/systemd/private`, the same interface without
//! a bus daemon, so a host without dbus-daemon works too). Calls block;
//! a job is waited for by polling its object until systemd drops it, then
//! the unit's state says how it ended.

use std::time::{Duration, Instant};

use zbus::blocking::Connection;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use super::props::{Prop, Props};
use crate::cgroups::error::{CgroupError, Result};

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const PRIVATE_SOCKET: &str = "/run/systemd/private";
/// runc waits 30 s for a unit's job too.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Manager {
    conn: Connection,
    /// Connected to the private socket: no bus, so no destination.
    p2p: bool,
}

impl Manager {
    /// Connect for `op` (the operation, for messages).
    pub fn connect(op: &str) -> Result<Manager> {
        match Connection::system() {
            Ok(conn) => Ok(Manager { conn, p2p: false }),
            Err(bus_err) => {
                let private = std::os::unix::net::UnixStream::connect(PRIVATE_SOCKET)
                    .map_err(zbus::Error::from)
                    .and_then(|s| {
                        zbus::blocking::connection::Builder::async_io_unix_stream(s)
                            .p2p()
                            .build()
                    });
                match private {
                    Ok(conn) => Ok(Manager { conn, p2p: true }),
                    Err(e) => Err(CgroupError::Systemd {
                        op: op.to_string(),
                        unit: String::new(),
                        reason: format!(
                            "cannot reach systemd: system bus: {bus_err}; {PRIVATE_SOCKET}: {e}"
                        ),
                    }),
                }
            }
        }
    }

    fn dest(&self) -> Option<&'static str> {
        (!self.p2p).then_some(DEST)
    }

    fn call<B>(
        &self,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
    ) -> zbus::Result<zbus::Message>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn
            .call_method(self.dest(), path, Some(iface), method, body)
    }

    /// `StartTransientUnit` and wait until the unit is active. A unit of
    /// that name left failed by an earlier container is reset and the
    /// start tried once more.
    pub fn start(&self, unit: &str, props: &Props) -> Result<()> {
        const OP: &str = "start the systemd unit";
        let values: Vec<(&str, Value<'_>)> = props.iter().map(|(n, v)| (*n, value(v))).collect();
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        let mut retried = false;
        let job = loop {
            match self.call(
                PATH,
                MANAGER,
                "StartTransientUnit",
                &(unit, "replace", &values, &aux),
            ) {
                Ok(reply) => break job_path(&reply, OP, unit)?,
                Err(e)
                    if error_name(&e) == Some("org.freedesktop.systemd1.UnitExists")
                        && !retried =>
                {
                    retried = true;
                    let _ = self.call(PATH, MANAGER, "ResetFailedUnit", &(unit,));
                }
                Err(e) => {
                    let exists = error_name(&e) == Some("org.freedesktop.systemd1.UnitExists");
                    return Err(CgroupError::Systemd {
                        op: OP.into(),
                        unit: unit.into(),
                        reason: if exists {
                            format!("{e} (a unit of that name is still active: another container with this cgroupsPath?)")
                        } else {
                            e.to_string()
                        },
                    });
                }
            }
        };
        self.wait_job(&job, OP, unit)?;
        let (active, sub) = self.unit_state(unit, OP)?;
        if active != "active" {
            return Err(CgroupError::Systemd {
                op: OP.into(),
                unit: unit.into(),
                reason: format!(
                    "the unit is {active} ({sub}) after its start job: see `journalctl -u {unit}`"
                ),
            });
        }
        Ok(())
    }

    /// `SetUnitProperties` (runtime only: nothing written under /etc).
    pub fn set(&self, unit: &str, props: &Props) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        let values: Vec<(&str, Value<'_>)> = props.iter().map(|(n, v)| (*n, value(v))).collect();
        self.call(PATH, MANAGER, "SetUnitProperties", &(unit, true, &values))
            .map(|_| ())
            .map_err(|e| CgroupError::Systemd {
                op: "update the systemd unit".into(),
                unit: unit.into(),
                reason: e.to_string(),
            })
    }

    /// `StopUnit` and wait; a unit that is already gone is fine, one left
    /// failed is reset so that its name can be used again.
    pub fn stop(&self, unit: &str) -> Result<()> {
        const OP: &str = "stop the systemd unit";
        match self.call(PATH, MANAGER, "StopUnit", &(unit, "replace")) {
            Ok(reply) => {
                let job = job_path(&reply, OP, unit)?;
                self.wait_job(&job, OP, unit)?;
            }
            Err(e) if error_name(&e) == Some("org.freedesktop.systemd1.NoSuchUnit") => {
                return Ok(())
            }
            Err(e) => {
                return Err(CgroupError::Systemd {
                    op: OP.into(),
                    unit: unit.into(),
                    reason: e.to_string(),
                })
            }
        }
        if matches!(self.unit_state(unit, OP), Ok((a, _)) if a == "failed") {
            let _ = self.call(PATH, MANAGER, "ResetFailedUnit", &(unit,));
        }
        Ok(())
    }

    /// Wait until systemd drops the job object (the job finished).
    fn wait_job(&self, job: &str, op: &str, unit: &str) -> Result<()> {
        let start = Instant::now();
        let mut delay = Duration::from_micros(200);
        loop {
            let r = self.call(
                job,
                "org.freedesktop.DBus.Properties",
                "Get",
                &("org.freedesktop.systemd1.Job", "State"),
            );
            if r.is_err() {
                return Ok(());
            }
            if start.elapsed() > JOB_TIMEOUT {
                return Err(CgroupError::Systemd {
                    op: op.into(),
                    unit: unit.into(),
                    reason: format!(
                        "systemd's job {job} did not finish within {} s",
                        JOB_TIMEOUT.as_secs()
                    ),
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(10));
        }
    }

    /// The unit's ActiveState and SubState.
    fn unit_state(&self, unit: &str, op: &str) -> Result<(String, String)> {
        let err = |e: zbus::Error| CgroupError::Systemd {
            op: op.into(),
            unit: unit.into(),
            reason: format!("cannot read the unit's state: {e}"),
        };
        let path: OwnedObjectPath = self
            .call(PATH, MANAGER, "GetUnit", &(unit,))
            .and_then(|r| r.body().deserialize())
            .map_err(err)?;
        let get = |prop: &str| -> Result<String> {
            let v: OwnedValue = self
                .call(
                    path.as_str(),
                    "org.freedesktop.DBus.Properties",
                    "Get",
                    &("org.freedesktop.systemd1.Unit", prop),
                )
                .and_then(|r| r.body().deserialize())
                .map_err(err)?;
            String::try_from(v).map_err(|e| err(e.into()))
        };
        Ok((get("ActiveState")?, get("SubState")?))
    }
}

fn job_path(reply: &zbus::Message, op: &str, unit: &str) -> Result<String> {
    reply
        .body()
        .deserialize::<OwnedObjectPath>()
        .map(|p| p.as_str().to_string())
        .map_err(|e| CgroupError::Systemd {
            op: op.into(),
            unit: unit.into(),
            reason: format!("unexpected reply: {e}"),
        })
}

fn error_name(e: &zbus::Error) -> Option<&str> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str()),
        _ => None,
    }
}

fn value(p: &Prop) -> Value<'_> {
    match p {
        Prop::Str(s) => Value::from(s.as_str()),
        Prop::Bool(b) => Value::from(*b),
        Prop::U64(n) => Value::from(*n),
        Prop::U32s(v) => Value::from(v.clone()),
        Prop::Bytes(v) => Value::from(v.clone()),
    }
}

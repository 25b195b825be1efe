//! Topic names and Home Assistant discovery configs: pure functions of the settings and a camera.

use serde_json::{json, Value};

use super::MqttSettings;

/// The things a camera shows in Home Assistant, as (component, thing).
pub const ENTITIES: [(&str, &str); 4] = [("binary_sensor", "fall"), ("sensor", "people"), ("switch", "ai"), ("camera", "snapshot")];

/// Topic names under `topic_prefix`.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
    discovery_prefix: String,
}

impl Topics {
    pub fn new(settings: &MqttSettings) -> Self {
        Self { prefix: settings.topic_prefix.clone(), discovery_prefix: settings.discovery_prefix.clone() }
    }

    pub fn available(&self) -> String {
        format!("{}/available", self.prefix)
    }

    pub fn events(&self) -> String {
        format!("{}/events", self.prefix)
    }

    /// `haven/<camera>/<what>`: fall, people, ai, status, snapshot, ai/set, snooze/set.
    pub fn camera(&self, camera: &str, what: &str) -> String {
        format!("{}/{camera}/{what}", self.prefix)
    }

    /// What HAVEN subscribes to: every camera's commands.
    pub fn commands(&self) -> [String; 2] {
        [format!("{}/+/ai/set", self.prefix), format!("{}/+/snooze/set", self.prefix)]
    }

    /// A command topic's camera and command (`ai`, `snooze`).
    pub fn command<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = topic.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?.strip_suffix("/set")?;
        let (camera, command) = rest.rsplit_once('/')?;
        (!camera.is_empty() && !camera.contains('/')).then_some((camera, command))
    }

    /// The entity's id: `haven_<camera>_<thing>` (characters Home Assistant refuses become `_`).
    pub fn unique_id(&self, camera: &str, thing: &str) -> String {
        let raw = format!("{}_{camera}_{thing}", self.prefix);
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
    }

    /// `homeassistant/<component>/haven_<camera>_<thing>/config`.
    pub fn discovery(&self, component: &str, camera: &str, thing: &str) -> String {
        format!("{}/{component}/{}/config", self.discovery_prefix, self.unique_id(camera, thing))
    }

    /// The retained discovery config of one of a camera's entities.
    pub fn discovery_config(&self, component: &str, camera: &str, thing: &str) -> Value {
        let mut config = json!({
            "name": match thing { "fall" => "Fall", "people" => "People", "ai" => "AI", _ => "Last event" },
            "unique_id": self.unique_id(camera, thing),
            "object_id": self.unique_id(camera, thing),
            "availability_topic": self.available(),
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {
                "identifiers": [self.unique_id(camera, "camera")],
                "name": camera,
                "manufacturer": "HAVEN",
                "model": "camera",
            },
        });
        let extra = match component {
            "binary_sensor" => json!({ "state_topic": self.camera(camera, "fall"), "payload_on": "ON", "payload_off": "OFF", "device_class": "safety", "json_attributes_topic": self.camera(camera, "status") }),
            "sensor" => json!({ "state_topic": self.camera(camera, "people"), "unit_of_measurement": "people", "state_class": "measurement", "icon": "mdi:account-group" }),
            "switch" => json!({ "state_topic": self.camera(camera, "ai"), "command_topic": self.camera(camera, "ai/set"), "payload_on": "ON", "payload_off": "OFF", "icon": "mdi:eye" }),
            _ => json!({ "topic": self.camera(camera, "snapshot") }),
        };
        for (k, v) in extra.as_object().into_iter().flatten() {
            config[k] = v.clone();
        }
        config
    }
}

/// `ON` / `OFF`, as Home Assistant's binary sensors and switches take them.
pub fn on_off(on: bool) -> &'static str {
    if on {
        "ON"
    } else {
        "OFF"
    }
}

/// `ON`/`OFF` (any case; `true`/`false`, `1`/`0` too).
pub fn parse_on_off(payload: &str) -> Option<bool> {
    match payload.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Some(true),
        "off" | "false" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_discovery_follow_the_prefixes() {
        let t = Topics::new(&MqttSettings::default());
        assert_eq!(t.available(), "haven/available");
        assert_eq!(t.command("haven/ward/ai/set"), Some(("ward", "ai")));
        assert_eq!(t.command("haven/ward/snooze/set"), Some(("ward", "snooze")));
        assert_eq!(t.command("haven/a/b/ai/set"), None);
        assert_eq!(t.command("other/ward/ai/set"), None);
        assert_eq!(t.discovery("binary_sensor", "ward", "fall"), "homeassistant/binary_sensor/haven_ward_fall/config");
        let c = t.discovery_config("switch", "ward", "ai");
        assert_eq!(c["command_topic"], "haven/ward/ai/set");
        assert_eq!(c["availability_topic"], "haven/available");
        assert_eq!(c["device"]["identifiers"][0], "haven_ward_camera");
        assert_eq!(t.discovery_config("camera", "ward", "snapshot")["topic"], "haven/ward/snapshot");
        assert_eq!(parse_on_off(" off\n"), Some(false));
        assert_eq!(parse_on_off("maybe"), None);
    }
}

//! An org's records: seeded Accounts and Contacts with Salesforce ids, field names and date
//! formats. Plain data and lookups; no HTTP and no SOQL parsing here.

use serde_json::{Map, Value, json};

/// The sObject types the sim knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SObject {
    Account,
    Contact,
}

impl SObject {
    pub(crate) fn parse(name: &str) -> Option<SObject> {
        if name.eq_ignore_ascii_case("Account") {
            Some(SObject::Account)
        } else if name.eq_ignore_ascii_case("Contact") {
            Some(SObject::Contact)
        } else {
            None
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            SObject::Account => "Account",
            SObject::Contact => "Contact",
        }
    }

    pub(crate) fn key_prefix(self) -> &'static str {
        match self {
            SObject::Account => "001",
            SObject::Contact => "003",
        }
    }

    /// Field names in their canonical case.
    pub(crate) fn fields(self) -> &'static [&'static str] {
        match self {
            SObject::Account => &["Id", "Name", "Industry", "AnnualRevenue", "CreatedDate"],
            SObject::Contact => &[
                "Id",
                "FirstName",
                "LastName",
                "Email",
                "AccountId",
                "CreatedDate",
            ],
        }
    }

    /// The canonical spelling of a field name, if the object has it.
    pub(crate) fn field(self, name: &str) -> Option<&'static str> {
        self.fields()
            .iter()
            .copied()
            .find(|field| field.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) object: SObject,
    pub(crate) id: String,
    pub(crate) fields: Map<String, Value>,
}

impl Record {
    /// The REST representation: `attributes` first, then the chosen fields.
    pub(crate) fn to_json(&self, version: &str, fields: &[&str]) -> Value {
        let mut object = Map::new();
        object.insert(
            "attributes".to_owned(),
            json!({
                "type": self.object.name(),
                "url": format!("/services/data/v{version}/sobjects/{}/{}", self.object.name(), self.id),
            }),
        );
        for field in fields {
            let value = self.fields.get(*field).cloned().unwrap_or(Value::Null);
            object.insert((*field).to_owned(), value);
        }
        Value::Object(object)
    }
}

#[derive(Debug, Default)]
pub(crate) struct OrgData {
    pub(crate) records: Vec<Record>,
}

const COMPANIES: [&str; 10] = [
    "Acme Corporation",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark Industries",
    "Wayne Enterprises",
    "Hooli",
    "Vandelay Industries",
    "Soylent",
    "Tyrell",
];
const INDUSTRIES: [&str; 5] = ["Technology", "Manufacturing", "Energy", "Banking", "Retail"];
const FIRST_NAMES: [&str; 6] = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken"];
const LAST_NAMES: [&str; 6] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson",
];
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl OrgData {
    pub(crate) fn seed(accounts: usize, contacts_per_account: usize, now_ms: i64) -> OrgData {
        let mut records = Vec::new();
        for index in 0..accounts {
            let created = now_ms - DAY_MS * i64::try_from(accounts - index).unwrap_or(0);
            let name = match index / COMPANIES.len() {
                0 => COMPANIES[index % COMPANIES.len()].to_owned(),
                round => format!("{} {}", COMPANIES[index % COMPANIES.len()], round + 1),
            };
            let account = new_record(
                SObject::Account,
                &[
                    ("Name", json!(name)),
                    ("Industry", json!(INDUSTRIES[index % INDUSTRIES.len()])),
                    ("AnnualRevenue", json!((index as f64 + 1.0) * 1_000_000.0)),
                ],
                created,
            );
            let account_id = account.id.clone();
            records.push(account);
            for contact_index in 0..contacts_per_account {
                let position = index * contacts_per_account + contact_index;
                let first = FIRST_NAMES[position % FIRST_NAMES.len()];
                let last = LAST_NAMES[(position / FIRST_NAMES.len() + index) % LAST_NAMES.len()];
                let email = format!("{}.{}{position}@example.com", first, last).to_lowercase();
                records.push(new_record(
                    SObject::Contact,
                    &[
                        ("FirstName", json!(first)),
                        ("LastName", json!(last)),
                        ("Email", json!(email)),
                        ("AccountId", json!(account_id)),
                    ],
                    created,
                ));
            }
        }
        OrgData { records }
    }

    pub(crate) fn find(&self, object: SObject, id: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|record| record.object == object && same_id(&record.id, id))
    }

    pub(crate) fn find_mut(&mut self, object: SObject, id: &str) -> Option<&mut Record> {
        self.records
            .iter_mut()
            .find(|record| record.object == object && same_id(&record.id, id))
    }
}

/// 15- and 18-character ids name the same record.
fn same_id(stored: &str, asked: &str) -> bool {
    stored == asked || (asked.len() == 15 && stored.starts_with(asked))
}

pub(crate) fn new_record(object: SObject, values: &[(&str, Value)], created_ms: i64) -> Record {
    let id = crate::ids::record_id(object.key_prefix());
    let mut fields = Map::new();
    fields.insert("Id".to_owned(), json!(id));
    for (name, value) in values {
        fields.insert((*name).to_owned(), value.clone());
    }
    fields.insert(
        "CreatedDate".to_owned(),
        json!(salesforce_datetime(created_ms)),
    );
    Record { object, id, fields }
}

/// `2026-01-31T12:00:00.000+0000`, Salesforce's REST datetime format.
pub(crate) fn salesforce_datetime(epoch_ms: i64) -> String {
    let days = epoch_ms.div_euclid(DAY_MS);
    let ms_of_day = epoch_ms.rem_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+0000",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_use_salesforce_format() {
        assert_eq!(
            salesforce_datetime(1_708_058_728_442),
            "2024-02-16T04:45:28.442+0000"
        );
    }

    #[test]
    fn seeding_makes_accounts_and_their_contacts() {
        let data = OrgData::seed(3, 2, 1_708_058_728_442);
        assert_eq!(data.records.len(), 9);
    }
}

//! Groups (issue 17): creation (`groupName`, a unique `id`, the branch, members that are
//! existing clients, their roles among the tenant's group role names, the tenant's group
//! rules), lookup by id or encodedKey, their JSON. A group may hold loans and deposits
//! (`accountHolderType: GROUP`, see `clients::holder`).
//!
//! The shape is Mambu's API v2 `Group` (skyleague/mambu-sdk `src/groups/rest.zod.ts`):
//! `groupMembers[]` of `{clientKey, roles: [{groupRoleNameKey, roleName?, roleNameId?,
//! encodedKey?}]}`.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::json::{JsonText, object, optional_str, required_str, stamp, writable};
use super::{Answer, EntityRef, Group, Tenant, index_u32};
use crate::sandbox::error::ApiError;
use crate::sandbox::tenant::{AvailableFor, GroupSizeLimitType, MultipleGroupMemberships};

/// A group's members: their client indexes, and each member as answered.
type Members = (Vec<usize>, Vec<Map<String, Value>>);

impl Tenant {
    pub fn create_group(&mut self, body: &Value) -> Answer {
        let doc = object(body)?;
        let name = required_str(doc, "groupName")?;
        let branch = optional_str(doc, "assignedBranchKey")?;
        if let Some(branch) = branch
            && self
                .products
                .branch(branch)
                .is_none_or(|b| b.encoded_key != branch)
        {
            return Err(ApiError::invalid_branch_key());
        }
        let custom = self.custom_field_values(AvailableFor::Group, doc)?;
        let given_id = optional_str(doc, "id")?;
        if let Some(id) = given_id
            && self.by_id(&self.group_ids, id).is_some()
        {
            self.counters.refused_group_ids += 1;
            return Err(ApiError::group_id_in_use());
        }
        let (members, answered) = self.group_members(doc, branch)?;
        let id = match given_id {
            Some(id) => id.to_owned(),
            None => {
                // The natural key of a group sent without an id: its name and branch.
                let natural = format!("group|{}|{}", name.trim(), branch.unwrap_or(""));
                if self.seen_before(natural) {
                    self.counters.duplicate_groups += 1;
                }
                format!("G{:08}", self.seq + 1)
            }
        };
        let encoded_key = self.next_key();
        let index = self.groups.len();
        self.group_ids
            .insert(self.fingerprint.of(&id), index_u32(index));
        self.keys.insert(encoded_key, EntityRef::Group(index));
        let mut doc = writable(
            doc,
            &[
                "encodedKey",
                "creationDate",
                "lastModifiedDate",
                "loanCycle",
                "migrationEventKey",
            ],
        );
        doc.remove("id");
        doc.extend(custom);
        // Each role as Mambu answers it: its own key, its role name's name and id.
        let answered = answered
            .into_iter()
            .map(|mut member| {
                if let Some(Value::Array(roles)) = member.get_mut("roles") {
                    for role in roles.iter_mut().filter_map(Value::as_object_mut) {
                        role.insert("encodedKey".into(), json!(self.new_key()));
                    }
                }
                Value::Object(member)
            })
            .collect();
        doc.insert("groupMembers".into(), Value::Array(answered));
        self.groups.push(Group {
            encoded_key,
            id,
            doc: JsonText::new(&doc),
            members,
            created: self.zone.now(),
            deleted: false,
        });
        self.created(EntityRef::Group(index));
        Ok(self.group_json(index))
    }

    /// The body's `groupMembers`, checked: each an object naming an existing client by
    /// `clientKey` (its encodedKey), at most once; each role naming one of the tenant's group
    /// role names; then the group rules (size, one group per client, same branch). Returns the
    /// members' client indexes and the members as answered (roles completed with their names).
    fn group_members(
        &self,
        doc: &Map<String, Value>,
        branch: Option<&str>,
    ) -> Result<Members, ApiError> {
        let items = match doc.get("groupMembers") {
            None | Some(Value::Null) => &Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(ApiError::invalid_parameters("groupMembers")),
        };
        let rules = &self.client_rules.group_rules;
        let mut members = Vec::with_capacity(items.len());
        let mut answered = Vec::with_capacity(items.len());
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("groupMembers[{i}]");
            let member = item
                .as_object()
                .ok_or_else(|| ApiError::invalid_parameters(at.clone()))?;
            let key = member
                .get("clientKey")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .ok_or_else(|| ApiError::missing(&format!("{at}.clientKey")))?;
            // An encodedKey, as for an account holder: a client id is not a key.
            let client = match self.entity(key) {
                Some(EntityRef::Client(c)) => c,
                _ => {
                    return Err(ApiError::invalid_member_client_key(format!(
                        "{at}.clientKey"
                    )));
                }
            };
            // Stricter reading: the record does not say whether a client listed twice is
            // merged; it is refused.
            if !seen.insert(client) {
                return Err(ApiError::invalid_parameters(format!(
                    "{at}.clientKey: the client is listed twice"
                )));
            }
            if rules.multiple_group_memberships == MultipleGroupMemberships::OneGroup
                && self.groups.iter().any(|g| g.members.contains(&client))
            {
                return Err(ApiError::multiple_group_membership(format!(
                    "{at}.clientKey"
                )));
            }
            if rules.members_same_branch {
                // Stricter reading: a client without a branch does not match a group with one,
                // nor a client with one a group without.
                let own = self.clients[client].doc.get("assignedBranchKey");
                let own = own.as_ref().and_then(Value::as_str);
                if own != branch {
                    return Err(ApiError::member_branch_mismatch(format!(
                        "{at}.clientKey: the client's branch `{}` is not the group's `{}`",
                        own.unwrap_or("none"),
                        branch.unwrap_or("none")
                    )));
                }
            }
            let mut out = member.clone();
            out.insert("clientKey".into(), json!(key));
            let roles = match member.get("roles") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(roles)) => roles
                    .iter()
                    .enumerate()
                    .map(|(r, role)| self.group_role(role, &format!("{at}.roles[{r}]")))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(ApiError::invalid_parameters(format!("{at}.roles"))),
            };
            out.insert("roles".into(), Value::Array(roles));
            members.push(client);
            answered.push(out);
        }
        if rules.group_size_limit_type == GroupSizeLimitType::Hard {
            let size = members.len() as u64;
            if let Some(min) = rules.min_group_size_limit
                && size < u64::from(min)
            {
                return Err(ApiError::invalid_group_size(format!(
                    "groupMembers: {size} members, at least {min} needed"
                )));
            }
            if let Some(max) = rules.max_group_size_limit
                && size > u64::from(max)
            {
                return Err(ApiError::invalid_group_size(format!(
                    "groupMembers: {size} members, at most {max} allowed"
                )));
            }
        }
        Ok((members, answered))
    }

    /// One member role, checked against the tenant's group role names and answered with the
    /// name's name and id (Mambu's `roleName`, `roleNameId`).
    fn group_role(&self, role: &Value, at: &str) -> Result<Value, ApiError> {
        let role = role
            .as_object()
            .ok_or_else(|| ApiError::invalid_parameters(at))?;
        let key = role
            .get("groupRoleNameKey")
            .and_then(Value::as_str)
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| ApiError::missing(&format!("{at}.groupRoleNameKey")))?;
        let name = self.products.group_role_name(key).ok_or_else(|| {
            ApiError::invalid_group_role_name_key(format!("{at}.groupRoleNameKey"))
        })?;
        // Stricter reading: a `roleName` sent along must be the named role's own name (the
        // record does not say whether a different one is ignored or refused).
        if let Some(given) = role.get("roleName").and_then(Value::as_str)
            && given != name.name
        {
            return Err(ApiError::invalid_group_role_name_key(format!(
                "{at}.roleName: `{given}` is not the name of `{key}` (`{}`)",
                name.name
            )));
        }
        Ok(json!({
            "groupRoleNameKey": name.encoded_key,
            "roleName": name.name,
            "roleNameId": name.id,
        }))
    }

    pub fn get_group(&self, id_or_key: &str) -> Answer {
        let index = self
            .group_index(id_or_key)
            .ok_or_else(ApiError::invalid_group_id)?;
        Ok(self.group_json(index))
    }

    pub(super) fn group_index(&self, id_or_key: &str) -> Option<usize> {
        match self.entity(id_or_key) {
            Some(EntityRef::Group(i)) => Some(i),
            _ => self.by_id(&self.group_ids, id_or_key),
        }
    }

    fn group_json(&self, index: usize) -> Value {
        let g = &self.groups[index];
        let mut out = g.doc.map();
        out.insert("encodedKey".into(), json!(g.encoded_key));
        out.insert("id".into(), json!(g.id));
        out.insert("creationDate".into(), stamp(g.created));
        out.insert("lastModifiedDate".into(), stamp(g.created));
        out.insert("loanCycle".into(), json!(0));
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::test_support::{client, tenant};
    use super::super::{ClientRules, Products, Tenant, Zone};
    use crate::sandbox::products::{GroupRoleName, HolderKind};
    use crate::sandbox::tenant::{GroupRules, GroupSizeLimitType, MultipleGroupMemberships};

    const LEADER: &str = "8a19c0de0000000000000000000e0001";
    const MEMBER: &str = "8a19c0de0000000000000000000e0004";
    const LISBON: &str = "8a19c0de00000000000000000000b001";
    const BERLIN: &str = "8a19c0de00000000000000000000b002";
    const MICRO: &str = "8a19c0de00000000000000000000a003";
    const PERSONAL: &str = "8a19c0de00000000000000000000a001";

    /// A tenant with the built-in products (MICRO open to groups), two role names and `rules`.
    fn with_rules(rules: GroupRules) -> Tenant {
        let mut products = Products::default_set();
        products.group_role_names = vec![
            GroupRoleName {
                id: "LEADER".into(),
                encoded_key: LEADER.into(),
                name: "Leader".into(),
            },
            GroupRoleName {
                id: "MEMBER".into(),
                encoded_key: MEMBER.into(),
                name: "Member".into(),
            },
        ];
        for p in &mut products.loan_products {
            if p.id == "MICRO" {
                p.availability_settings.available_for =
                    vec![HolderKind::Individuals, HolderKind::PureGroups];
            } else {
                p.availability_settings.available_for = vec![HolderKind::Individuals];
            }
        }
        let client_rules = ClientRules {
            group_rules: rules,
            ..ClientRules::default()
        };
        Tenant::new(products, Zone::default(), client_rules)
    }

    fn client_in(t: &mut Tenant, branch: &str) -> String {
        t.create_client(
            &json!({ "firstName": "Ana", "lastName": "Silva", "assignedBranchKey": branch }),
        )
        .unwrap()["encodedKey"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn group(name: &str, members: &[&str]) -> Value {
        json!({
            "groupName": name,
            "groupMembers": members.iter().map(|m| json!({ "clientKey": m, "roles": [{ "groupRoleNameKey": MEMBER }] })).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn a_group_of_clients_is_created_with_its_roles_and_read_back() {
        let mut t = with_rules(GroupRules::default());
        let (a, b) = (client(&mut t), client(&mut t));
        let created = t
            .create_group(&json!({
                "id": "GRP-1", "groupName": "Mulheres de Aveiro", "assignedBranchKey": LISBON,
                "groupMembers": [
                    { "clientKey": a, "roles": [{ "groupRoleNameKey": LEADER, "roleName": "Leader" }] },
                    { "clientKey": b },
                ],
            }))
            .unwrap();
        assert_eq!(created["id"], "GRP-1");
        let role = &created["groupMembers"][0]["roles"][0];
        assert_eq!(role["roleName"], "Leader");
        assert_eq!(role["roleNameId"], "LEADER");
        assert_eq!(role["encodedKey"].as_str().unwrap().len(), 32);
        assert_eq!(created["groupMembers"][1]["roles"], json!([]));
        let key = created["encodedKey"].as_str().unwrap();
        assert_eq!(t.get_group(key).unwrap(), created);
        assert_eq!(t.get_group("GRP-1").unwrap(), created);
        assert_eq!(t.get_group("GRP-2").unwrap_err().reason, "INVALID_GROUP_ID");
        // A client may be in several groups by default.
        t.create_group(&group("Second", &[&a])).unwrap();
        assert_eq!(t.stats()["group_members"], 3);
    }

    #[test]
    fn members_roles_ids_and_branches_are_checked() {
        let mut t = with_rules(GroupRules::default());
        let a = client(&mut t);
        let err = t
            .create_group(&group("G", &["8a5b0000000000000000000000000999"]))
            .unwrap_err();
        assert_eq!(
            (err.code, err.reason, err.source.as_deref()),
            (302, "INVALID_CLIENT_KEY", Some("groupMembers[0].clientKey"))
        );
        let role = json!({ "groupName": "G", "groupMembers": [{ "clientKey": a, "roles": [{ "groupRoleNameKey": "nope" }] }] });
        let err = t.create_group(&role).unwrap_err();
        assert_eq!(
            (err.code, err.reason, err.source.as_deref()),
            (
                209,
                "INVALID_GROUP_ROLE_NAME_KEY",
                Some("groupMembers[0].roles[0].groupRoleNameKey")
            )
        );
        let err = t.create_group(&group("G", &[&a, &a])).unwrap_err();
        assert_eq!(err.reason, "INVALID_PARAMETERS");
        let err = t
            .create_group(&json!({ "groupName": "G", "assignedBranchKey": "BR-LIS" }))
            .unwrap_err();
        assert_eq!(err.reason, "INVALID_BRANCH_KEY");
        assert_eq!(
            t.create_group(&json!({ "id": "X" })).unwrap_err().reason,
            "INVALID_PARAMETERS"
        );
        t.create_group(&json!({ "id": "G-1", "groupName": "G" }))
            .unwrap();
        let err = t
            .create_group(&json!({ "id": "G-1", "groupName": "Other" }))
            .unwrap_err();
        assert_eq!((err.code, err.reason), (317, "GROUP_ID_ALREADY_IN_USE"));
        assert_eq!(t.counters.refused_group_ids, 1);
    }

    #[test]
    fn the_group_rules_refuse_size_membership_and_branch() {
        let rules = GroupRules {
            group_size_limit_type: GroupSizeLimitType::Hard,
            min_group_size_limit: Some(2),
            max_group_size_limit: Some(3),
            multiple_group_memberships: MultipleGroupMemberships::OneGroup,
            members_same_branch: true,
        };
        let mut t = with_rules(rules.clone());
        let lisbon: Vec<String> = (0..5).map(|_| client_in(&mut t, LISBON)).collect();
        let berlin = client_in(&mut t, BERLIN);
        let at = |g: Value| {
            let mut g = g;
            g["assignedBranchKey"] = json!(LISBON);
            g
        };
        let err = t.create_group(&at(group("G", &[&lisbon[0]]))).unwrap_err();
        assert_eq!((err.code, err.reason), (207, "INVALID_GROUP_SIZE"));
        let four: Vec<&str> = lisbon[..4].iter().map(String::as_str).collect();
        let err = t.create_group(&at(group("G", &four))).unwrap_err();
        assert_eq!(err.reason, "INVALID_GROUP_SIZE");
        let err = t
            .create_group(&at(group("G", &[&lisbon[0], &berlin])))
            .unwrap_err();
        assert_eq!(err.reason, "INVALID_BRANCH_KEY");
        assert!(
            err.source
                .as_deref()
                .unwrap()
                .starts_with("groupMembers[1].clientKey"),
            "{err:?}"
        );
        t.create_group(&at(group("G", &[&lisbon[0], &lisbon[1]])))
            .unwrap();
        let err = t
            .create_group(&at(group("H", &[&lisbon[2], &lisbon[1]])))
            .unwrap_err();
        assert_eq!(
            (err.code, err.reason, err.source.as_deref()),
            (
                208,
                "MULTIPLE_GROUP_MEMBERSHIP",
                Some("groupMembers[1].clientKey")
            )
        );
        // WARNING accepts a group outside the limits.
        let mut t = with_rules(GroupRules {
            group_size_limit_type: GroupSizeLimitType::Warning,
            ..rules
        });
        let a = client_in(&mut t, LISBON);
        t.create_group(&at(group("G", &[&a]))).unwrap();
    }

    #[test]
    fn a_group_sent_twice_without_an_id_is_a_duplicate() {
        let mut t = tenant();
        t.create_group(&json!({ "groupName": "G", "assignedBranchKey": LISBON }))
            .unwrap();
        t.create_group(&json!({ "groupName": "G", "assignedBranchKey": BERLIN }))
            .unwrap();
        assert_eq!(t.counters.duplicate_groups, 0);
        t.create_group(&json!({ "groupName": "G", "assignedBranchKey": LISBON }))
            .unwrap();
        assert_eq!(t.counters.duplicate_groups, 1);
        let stats = t.stats();
        assert_eq!(stats["groups"], 3);
        assert_eq!(stats["duplicates"]["groups"], 1);
    }

    #[test]
    fn a_group_holds_a_loan_of_a_product_open_to_groups_only() {
        let mut t = with_rules(GroupRules::default());
        let a = client_in(&mut t, LISBON);
        let g = t
            .create_group(&json!({ "groupName": "G", "assignedBranchKey": LISBON, "groupMembers": [{ "clientKey": a }] }))
            .unwrap();
        let key = g["encodedKey"].as_str().unwrap();
        let loan = |product: &str, kind: &str, holder: &str| {
            json!({ "accountHolderKey": holder, "accountHolderType": kind, "productTypeKey": product,
                "loanAmount": 1000, "interestSettings": { "interestRate": 12 },
                "scheduleSettings": { "gracePeriod": 0, "repaymentInstallments": 3 } })
        };
        let created = t.create_loan(&loan(MICRO, "GROUP", key)).unwrap();
        assert_eq!(created["accountHolderType"], "GROUP");
        assert_eq!(created["assignedBranchKey"], LISBON);
        let err = t.create_loan(&loan(PERSONAL, "GROUP", key)).unwrap_err();
        assert_eq!(
            (err.code, err.reason),
            (205, "INVALID_PARAMATERS_FOR_PRODUCT")
        );
        // The other kind's key is no holder.
        let err = t.create_loan(&loan(MICRO, "CLIENT", key)).unwrap_err();
        assert_eq!(err.reason, "ACCOUNT_HOLDER_NOT_FOUND");
        let err = t.create_loan(&loan(MICRO, "GROUP", &a)).unwrap_err();
        assert_eq!(err.reason, "ACCOUNT_HOLDER_NOT_FOUND");
        // Deposits: CA-STD is for individuals only.
        let err = t
            .create_deposit(&json!({ "accountHolderKey": key, "accountHolderType": "GROUP", "name": "Savings", "productTypeKey": "8a19c0de00000000000000000000d001" }))
            .unwrap_err();
        assert_eq!(err.reason, "INVALID_PARAMATERS_FOR_PRODUCT");
    }
}

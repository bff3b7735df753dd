//! Users, groups and tokens: rows with the record as JSON, the membership lock that
//! keeps a group from being deleted while a user joins it.

use super::*;

impl PgStore {
    pub(super) async fn insert_user_row(&self, user: &User) -> Result<()> {
        let (id, groups, doc) = user_params(user)?;
        let mut client = self.client().await?;
        let tx = membership_tx(&mut client, false).await?;
        match tx
            .execute(
                "INSERT INTO kci_users (id, username, email, group_ids, doc) VALUES ($1, $2, $3, $4, $5)",
                &[&id, &user.username, &user.email, &groups, &doc],
            )
            .await
        {
            Ok(_) => tx.commit().await.map_err(conv),
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict(
                "User with this id, username or e-mail already exists".into(),
            )),
            Err(e) => Err(conv(e)),
        }
    }

    pub(super) async fn get_user_row(&self, id: ObjectId) -> Result<Option<User>> {
        self.doc_by(
            "user",
            "SELECT doc FROM kci_users WHERE id = $1",
            &id.bytes().as_slice(),
        )
        .await
    }

    pub(super) async fn get_user_by_username_row(&self, username: &str) -> Result<Option<User>> {
        self.doc_by(
            "user",
            "SELECT doc FROM kci_users WHERE username = $1",
            &username,
        )
        .await
    }

    pub(super) async fn get_user_by_email_row(&self, email: &str) -> Result<Option<User>> {
        self.doc_by("user", "SELECT doc FROM kci_users WHERE email = $1", &email)
            .await
    }

    pub(super) async fn update_user_row(&self, user: &User) -> Result<()> {
        let (id, groups, doc) = user_params(user)?;
        let mut client = self.client().await?;
        let tx = membership_tx(&mut client, false).await?;
        match tx
            .execute(
                "UPDATE kci_users SET username = $2, email = $3, group_ids = $4, doc = $5 WHERE id = $1",
                &[&id, &user.username, &user.email, &groups, &doc],
            )
            .await
        {
            Ok(0) => Err(Error::NotFound(format!(
                "User not found with id: {}",
                user.id
            ))),
            Ok(_) => tx.commit().await.map_err(conv),
            Err(e) if is_unique_violation(&e) => {
                Err(Error::Conflict("Username or e-mail already taken".into()))
            }
            Err(e) => Err(conv(e)),
        }
    }

    /// [`Store::replace_user`]: the row is locked (`FOR UPDATE`) and compared as a
    /// record, then written in the same transaction.
    pub(super) async fn replace_user_row(&self, expected: &User, user: &User) -> Result<bool> {
        let (id, groups, doc) = user_params(user)?;
        let mut client = self.client().await?;
        let tx = membership_tx(&mut client, false).await?;
        let row = tx
            .query_opt("SELECT doc FROM kci_users WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .map_err(conv)?;
        let Some(row) = row else {
            return Err(Error::NotFound(format!(
                "User not found with id: {}",
                user.id
            )));
        };
        let stored: User = from_json_text("user", row.get::<_, &str>(0))?;
        if stored != *expected {
            return Ok(false);
        }
        match tx
            .execute(
                "UPDATE kci_users SET username = $2, email = $3, group_ids = $4, doc = $5 WHERE id = $1",
                &[&id, &user.username, &user.email, &groups, &doc],
            )
            .await
        {
            Ok(_) => tx.commit().await.map_err(conv).map(|()| true),
            Err(e) if is_unique_violation(&e) => {
                Err(Error::Conflict("Username or e-mail already taken".into()))
            }
            Err(e) => Err(conv(e)),
        }
    }

    pub(super) async fn delete_user_row(&self, id: ObjectId) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM kci_users WHERE id = $1",
                &[&id.bytes().as_slice()],
            )
            .await
            .map_err(conv)?;
        Ok(n > 0)
    }

    pub(super) async fn find_users_row(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<User>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT doc FROM kci_users ORDER BY id", &[])
            .await
            .map_err(conv)?;
        let mut found = Vec::new();
        for r in &rows {
            let u: User = from_json_text("user", r.get::<_, &str>(0))?;
            if filter.matches(&u.to_public_json()) {
                found.push(u);
            }
        }
        let total = found.len() as u64;
        Ok(Page {
            items: page_of(found, limit, offset),
            total,
        })
    }

    pub(super) async fn insert_group_row(&self, group: &UserGroup) -> Result<()> {
        let client = self.client().await?;
        match client
            .execute(
                "INSERT INTO kci_groups (id, name, doc) VALUES ($1, $2, $3)",
                &[
                    &group.id.bytes().as_slice(),
                    &group.name,
                    &json_text(group)?,
                ],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict(format!(
                "Group already exists: {}",
                group.name
            ))),
            Err(e) => Err(conv(e)),
        }
    }

    pub(super) async fn get_group_row(&self, id: ObjectId) -> Result<Option<UserGroup>> {
        self.doc_by(
            "group",
            "SELECT doc FROM kci_groups WHERE id = $1",
            &id.bytes().as_slice(),
        )
        .await
    }

    pub(super) async fn get_group_by_name_row(&self, name: &str) -> Result<Option<UserGroup>> {
        self.doc_by("group", "SELECT doc FROM kci_groups WHERE name = $1", &name)
            .await
    }

    pub(super) async fn delete_group_row(&self, id: ObjectId) -> Result<bool> {
        let key = id.bytes().to_vec();
        let mut client = self.client().await?;
        // Exclusive against user writes (which hold it shared): no membership can be
        // added between the check and the delete.
        let tx = membership_tx(&mut client, true).await?;
        let in_use: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM kci_users WHERE $1 = ANY(group_ids))",
                &[&key],
            )
            .await
            .map_err(conv)?
            .get(0);
        if in_use {
            return Err(Error::Conflict(
                "Group is in use by at least one user".into(),
            ));
        }
        let n = tx
            .execute("DELETE FROM kci_groups WHERE id = $1", &[&key])
            .await
            .map_err(conv)?;
        tx.commit().await.map_err(conv)?;
        Ok(n > 0)
    }

    pub(super) async fn find_groups_row(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<UserGroup>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT doc FROM kci_groups ORDER BY id", &[])
            .await
            .map_err(conv)?;
        let mut found = Vec::new();
        for r in &rows {
            let g: UserGroup = from_json_text("group", r.get::<_, &str>(0))?;
            if filter.matches(&serde_json::to_value(&g).unwrap_or_default()) {
                found.push(g);
            }
        }
        let total = found.len() as u64;
        Ok(Page {
            items: page_of(found, limit, offset),
            total,
        })
    }

    pub(super) async fn put_token_row(&self, token: &TokenRecord) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO kci_tokens (id, purpose, user_id, expires, used) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET purpose = EXCLUDED.purpose,
                     user_id = EXCLUDED.user_id, expires = EXCLUDED.expires, used = EXCLUDED.used",
                &[
                    &token.id,
                    &purpose_str(token.purpose),
                    &token.user_id.bytes().as_slice(),
                    &ts(token.expires),
                    &token.used,
                ],
            )
            .await
            .map_err(conv)?;
        Ok(())
    }

    pub(super) async fn get_token_row(&self, id: &str) -> Result<Option<TokenRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT * FROM kci_tokens WHERE id = $1", &[&id])
            .await
            .map_err(conv)?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub(super) async fn consume_token_row(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<TokenRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE kci_tokens SET used = true WHERE id = $1 AND NOT used AND expires > $2
                 RETURNING *",
                &[&id, &ts(now)],
            )
            .await
            .map_err(conv)?;
        row.as_ref().map(token_from_row).transpose()
    }
}

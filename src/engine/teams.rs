//! Teams and API keys: creation, revocation, the first start's key, and authentication.

use sha2::Digest;

use super::{Engine, EngineError, Result};
use crate::domain::*;
use crate::store::ops;

impl Engine {
    pub async fn create_team(&self, id: TeamId, name: String) -> Result<Team> {
        let now = Timestamp::now();
        let team = Team {
            id,
            name,
            created_at: now,
            updated_at: now,
        };
        self.store().commit(vec![ops::put_team(&team)]).await?;
        Ok(team)
    }

    /// Makes a key for `team` from `secret`, or a fresh secret. Returns the stored key and
    /// the secret (shown once).
    pub async fn create_api_key(
        &self,
        team: &TeamId,
        secret: Option<String>,
    ) -> Result<(ApiKey, String)> {
        let secret = secret.unwrap_or_else(new_secret);
        let key = ApiKey {
            id: ApiKeyId::new(),
            team_id: team.clone(),
            hash: hash_secret(&secret),
            created_at: Timestamp::now(),
        };
        self.store().commit(ops::put_api_key(&key).into()).await?;
        Ok((key, secret))
    }

    pub async fn revoke_api_key(&self, team: &TeamId, id: &ApiKeyId) -> Result<()> {
        match self.store().api_key_by_id(id)? {
            Some(key) if &key.team_id == team => {
                self.store()
                    .commit(ops::remove_api_key(&key).into())
                    .await?;
                Ok(())
            }
            _ => Err(EngineError::NotFound("api key")),
        }
    }

    /// The key a presented secret belongs to. The lookup is by hash; the final comparison
    /// is constant-time.
    pub fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>> {
        use subtle::ConstantTimeEq;
        let hash = hash_secret(secret);
        Ok(self
            .store()
            .api_key_by_hash(&hash)?
            .filter(|k| bool::from(k.hash.ct_eq(&hash))))
    }

    /// `FASTHOOK_TEAM_ID`/`FASTHOOK_API_KEY` make sure that team and key exist; with no key
    /// at all, a first start creates `tm_default` and returns its new key to print once.
    pub async fn bootstrap_auth(&self) -> Result<Option<(TeamId, String)>> {
        let auth = self.config().auth.clone();
        if let (Some(team), Some(key)) = (auth.team_id, auth.api_key) {
            let team =
                TeamId::parse_loose(&team).map_err(|e| EngineError::Conflict(e.to_string()))?;
            if self.store().team(&team)?.is_none() {
                self.create_team(team.clone(), team.as_str().to_string())
                    .await?;
            }
            match self.authenticate(&key)? {
                Some(existing) if existing.team_id == team => {}
                Some(_) => {
                    return Err(EngineError::Conflict(
                        "FASTHOOK_API_KEY already belongs to another team".into(),
                    ));
                }
                None => {
                    self.create_api_key(&team, Some(key)).await?;
                }
            }
            return Ok(None);
        }
        if self.store().any_api_key()? {
            return Ok(None);
        }
        let team = TeamId::parse_loose("tm_default").expect("a valid team id");
        if self.store().team(&team)?.is_none() {
            self.create_team(team.clone(), "default".into()).await?;
        }
        let (_, secret) = self.create_api_key(&team, None).await?;
        Ok(Some((team, secret)))
    }
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// `fhp_` and 40 random alphanumerics (about 238 bits).
pub fn new_secret() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    format!(
        "fhp_{}",
        Alphanumeric.sample_string(&mut rand::rngs::OsRng, 40)
    )
}

//! The console over gRPC, against a real identity, on SQLite and PostgreSQL: the DESIGN.md section 4
//! matrix cell by cell, seats under concurrency, invitations from mail to sign-in, removal, and presence
//! reaching watchers.

mod common;

use std::time::Duration;

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::identity::v1 as idp;
use common::{PASSWORD, Platform, TestDb, User, authed};
use tonic::Code;

const CUSTOMERS: dir::Capability = dir::Capability::AssistCustomers;

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    result.err().map_or(Code::Ok, |s| s.code())
}

/// A back-office user with an active console profile of `role` (made by the platform administrator),
/// signed in.
async fn member(platform: &Platform, email: &str, role: dir::Role) -> User {
    let user = platform
        .identity
        .back_office_user(&platform.admin, email, email)
        .await;
    target(platform, &user.id, role).await;
    user
}

/// Gives the back-office user `id` an active console profile of `role` (its email from identity).
async fn target(platform: &Platform, id: &str, role: dir::Role) {
    platform
        .grant(&platform.admin.token, id, CUSTOMERS)
        .await
        .unwrap();
    if role != dir::Role::Agent {
        change_role(platform, &platform.admin.token, id, role)
            .await
            .unwrap();
    }
}

/// A back-office user with a password (never signed in) and an active profile of `role`: its id.
async fn target_user(platform: &Platform, email: &str, role: dir::Role) -> String {
    let principal = platform
        .identity
        .client
        .clone()
        .create_back_office_user(authed(
            &platform.admin.token,
            idp::CreateBackOfficeUserRequest {
                email: email.into(),
                full_name: email.into(),
                password: PASSWORD.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    target(platform, &principal.id, role).await;
    principal.id
}

async fn change_role(
    platform: &Platform,
    token: &str,
    id: &str,
    role: dir::Role,
) -> Result<dir::Agent, tonic::Status> {
    platform
        .client()
        .change_role(authed(
            token,
            dir::ChangeRoleRequest {
                agent_id: id.into(),
                role: role as i32,
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn invite(
    platform: &Platform,
    token: &str,
    email: &str,
    role: dir::Role,
) -> Result<dir::Agent, tonic::Status> {
    platform
        .client()
        .invite_agent(authed(
            token,
            dir::InviteAgentRequest {
                email: email.into(),
                role: role as i32,
                full_name: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn remove(
    platform: &Platform,
    token: &str,
    id: &str,
    confirm_email: &str,
) -> Result<dir::Agent, tonic::Status> {
    platform
        .client()
        .remove_agent(authed(
            token,
            dir::RemoveAgentRequest {
                agent_id: id.into(),
                confirm_email: confirm_email.into(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn heartbeat(
    platform: &Platform,
    token: &str,
    presence: dir::Presence,
) -> Result<dir::HeartbeatResponse, tonic::Status> {
    platform
        .client()
        .heartbeat(authed(
            token,
            dir::HeartbeatRequest {
                presence: presence as i32,
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn seats(platform: &Platform) -> dir::Seats {
    platform
        .client()
        .get_seats(authed(&platform.admin.token, dir::GetSeatsRequest {}))
        .await
        .unwrap()
        .into_inner()
}

async fn set_seats(
    platform: &Platform,
    token: &str,
    licensed: u32,
) -> Result<dir::Seats, tonic::Status> {
    platform
        .client()
        .set_seats(authed(token, dir::SetSeatsRequest { licensed }))
        .await
        .map(|r| r.into_inner())
}

/// The newest mail to `email` in identity's outbox: the token of its link.
async fn mailed_token(platform: &Platform, email: &str) -> String {
    let outbox = platform
        .identity
        .client
        .clone()
        .list_outbox(authed(
            &platform.admin.token,
            idp::ListOutboxRequest {
                page: None,
                recipient: email.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let body = &outbox.messages.first().expect("a mail").body;
    let start = body.find("token=").expect("a link with a token") + "token=".len();
    body[start..].split_whitespace().next().unwrap().to_owned()
}

/// Everything a `caller` of each role may do to a `target` of each role, per DESIGN.md section 4: the
/// invitation, removal, role change, password reset and routing of agents and supervisors by
/// supervisors; of everyone by administrators; of nobody by agents.
#[tokio::test]
async fn the_authorization_matrix_holds_cell_by_cell() {
    use dir::Role::{Administrator, Agent, Supervisor};
    for platform in Platform::all().await {
        let backend = platform.backend();
        set_seats(&platform, &platform.admin.token, 200)
            .await
            .unwrap();
        let table = [
            (Agent, [false, false, false]),
            (Supervisor, [true, true, false]),
            (Administrator, [true, true, true]),
        ];
        for (caller_role, allowed_on) in table {
            let tag = caller_role.as_str_name().to_lowercase();
            let caller = member(&platform, &format!("{tag}@console.test"), caller_role).await;
            for (target_role, allowed) in [Agent, Supervisor, Administrator]
                .into_iter()
                .zip(allowed_on)
            {
                let cell = format!("{backend}: {caller_role:?} on {target_role:?}");
                let expected = if allowed {
                    Code::Ok
                } else {
                    Code::PermissionDenied
                };
                let prefix = format!("{tag}-{}", target_role.as_str_name().to_lowercase());

                let invited = invite(
                    &platform,
                    &caller.token,
                    &format!("{prefix}-invited@console.test"),
                    target_role,
                )
                .await;
                assert_eq!(code(invited), expected, "invite: {cell}");

                let email = format!("{prefix}-removed@console.test");
                let id = target_user(&platform, &email, target_role).await;
                assert_eq!(
                    code(remove(&platform, &caller.token, &id, &email).await),
                    expected,
                    "remove: {cell}"
                );

                let id = target_user(
                    &platform,
                    &format!("{prefix}-role@console.test"),
                    target_role,
                )
                .await;
                let other = if target_role == Agent {
                    Supervisor
                } else {
                    Agent
                };
                assert_eq!(
                    code(change_role(&platform, &caller.token, &id, other).await),
                    expected,
                    "change role: {cell}"
                );

                let id = target_user(
                    &platform,
                    &format!("{prefix}-reset@console.test"),
                    target_role,
                )
                .await;
                let reset = platform
                    .client()
                    .reset_agent_password(authed(
                        &caller.token,
                        dir::AgentRequest {
                            agent_id: id.clone(),
                        },
                    ))
                    .await;
                assert_eq!(code(reset), expected, "reset password: {cell}");

                let routing = platform
                    .client()
                    .update_agent_routing(authed(
                        &caller.token,
                        dir::UpdateAgentRoutingRequest {
                            agent_id: id,
                            capacity: Some(7),
                            skills: Some(dir::SkillList {
                                skills: vec!["billing".into()],
                            }),
                        },
                    ))
                    .await;
                assert_eq!(code(routing), expected, "routing: {cell}");
            }

            // Rows of the matrix that do not depend on a target.
            let manager = caller_role != Agent;
            let refused_unless = |allowed: bool| {
                if allowed {
                    Code::Ok
                } else {
                    Code::PermissionDenied
                }
            };
            let own_role = change_role(&platform, &caller.token, &caller.id, Agent).await;
            assert_eq!(
                code(own_role),
                Code::PermissionDenied,
                "{backend}: own role, {caller_role:?}"
            );
            let own = remove(
                &platform,
                &caller.token,
                &caller.id,
                &format!("{tag}@console.test"),
            )
            .await;
            assert_eq!(
                code(own),
                Code::PermissionDenied,
                "{backend}: removing oneself, {caller_role:?}"
            );
            assert_eq!(
                code(set_seats(&platform, &caller.token, 200).await),
                refused_unless(caller_role == Administrator),
                "{backend}: seats, {caller_role:?}"
            );
            let watch = platform
                .client()
                .watch_agents(authed(&caller.token, dir::WatchAgentsRequest {}))
                .await;
            assert_eq!(
                code(watch),
                refused_unless(manager),
                "{backend}: watch, {caller_role:?}"
            );
            let history = platform.history(&caller.token, &caller.id).await;
            assert_eq!(
                code(history),
                refused_unless(manager),
                "{backend}: history, {caller_role:?}"
            );
            let list = platform
                .client()
                .list_agents(authed(&caller.token, dir::ListAgentsRequest::default()))
                .await;
            assert_eq!(code(list), Code::Ok, "{backend}: list, {caller_role:?}");
            let beat = heartbeat(&platform, &caller.token, dir::Presence::Online).await;
            assert_eq!(
                code(beat),
                Code::Ok,
                "{backend}: heartbeat, {caller_role:?}"
            );
        }
        platform.stop().await;
    }
}

async fn rights(platform: &Platform, token: &str) -> dir::ConsoleRights {
    platform
        .client()
        .get_console_rights(authed(token, dir::GetConsoleRightsRequest {}))
        .await
        .unwrap()
        .into_inner()
}

/// Whom `token`'s caller is offered to manage, by id, as `ListAgents` marks it.
async fn manageable(platform: &Platform, token: &str) -> Vec<(String, bool)> {
    let listed = platform
        .client()
        .list_agents(authed(token, dir::ListAgentsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    listed
        .agents
        .into_iter()
        .map(|agent| (agent.id, agent.caller_may_manage))
        .collect()
}

/// What the pages offer comes from agent-directory, from the current state: a demoted member's next
/// page offers nothing more.
#[tokio::test]
async fn the_directory_tells_each_caller_its_rights_now() {
    use dir::Role::{Administrator, Agent, Supervisor};
    for platform in Platform::all().await {
        let backend = platform.backend();
        let supervisor = member(&platform, "rights-sup@example.com", Supervisor).await;
        let agent = member(&platform, "rights-agent@example.com", Agent).await;
        let administrator = member(&platform, "rights-admin@example.com", Administrator).await;

        let own = rights(&platform, &supervisor.token).await;
        assert_eq!(own.role, Supervisor as i32, "{backend}");
        assert_eq!(
            own.grantable_roles,
            [Agent as i32, Supervisor as i32],
            "{backend}"
        );
        assert!(!own.platform_administrator, "{backend}");
        assert_eq!(own.profile.unwrap().id, supervisor.id, "{backend}");
        let offered = manageable(&platform, &supervisor.token).await;
        let may = |id: &str| offered.iter().any(|(listed, may)| listed == id && *may);
        assert!(may(&agent.id), "{backend}: a supervisor manages agents");
        assert!(!may(&administrator.id), "{backend}: not administrators");
        assert!(!may(&supervisor.id), "{backend}: nor itself");

        let platform_admin = rights(&platform, &platform.admin.token).await;
        assert_eq!(platform_admin.role, Administrator as i32, "{backend}");
        assert!(platform_admin.platform_administrator, "{backend}");
        assert_eq!(platform_admin.grantable_roles.len(), 3, "{backend}");

        change_role(&platform, &platform.admin.token, &supervisor.id, Agent)
            .await
            .unwrap();
        let demoted = rights(&platform, &supervisor.token).await;
        assert_eq!(demoted.role, Agent as i32, "{backend}");
        assert!(demoted.grantable_roles.is_empty(), "{backend}");
        let offered = manageable(&platform, &supervisor.token).await;
        assert!(
            offered.iter().all(|(_, may)| !may),
            "{backend}: {offered:?}"
        );

        remove(
            &platform,
            &platform.admin.token,
            &supervisor.id,
            "rights-sup@example.com",
        )
        .await
        .unwrap();
        let removed = rights(&platform, &supervisor.token).await;
        assert_eq!(removed.role, dir::Role::Unspecified as i32, "{backend}");
        assert!(removed.grantable_roles.is_empty(), "{backend}");
        platform.stop().await;
    }
}

#[tokio::test]
async fn supervisors_grant_no_administrator_role_and_the_last_administrator_stays() {
    for platform in Platform::all().await {
        let backend = platform.backend();
        let supervisor = member(&platform, "sup@console.test", dir::Role::Supervisor).await;
        let agent = target_user(&platform, "agent@console.test", dir::Role::Agent).await;
        let promote = change_role(
            &platform,
            &supervisor.token,
            &agent,
            dir::Role::Administrator,
        )
        .await;
        assert_eq!(code(promote), Code::PermissionDenied, "{backend}");
        let made = change_role(&platform, &supervisor.token, &agent, dir::Role::Supervisor)
            .await
            .unwrap();
        assert_eq!(made.role, dir::Role::Supervisor as i32);

        // One administrator profile: it can be neither demoted nor removed, by anyone.
        let admin = member(&platform, "boss@console.test", dir::Role::Administrator).await;
        let demote = change_role(
            &platform,
            &platform.admin.token,
            &admin.id,
            dir::Role::Agent,
        )
        .await
        .unwrap_err();
        assert_eq!(demote.code(), Code::FailedPrecondition, "{backend}");
        assert_eq!(
            demote.message(),
            "the last administrator cannot be removed or demoted"
        );
        let removed = remove(
            &platform,
            &platform.admin.token,
            &admin.id,
            "boss@console.test",
        )
        .await;
        assert_eq!(code(removed), Code::FailedPrecondition, "{backend}");
        // With a second one, the first can go.
        let second = member(&platform, "boss2@console.test", dir::Role::Administrator).await;
        change_role(&platform, &second.token, &admin.id, dir::Role::Supervisor)
            .await
            .unwrap();
        let agent = platform
            .get(&platform.admin.token, &admin.id)
            .await
            .unwrap();
        assert_eq!(agent.role, dir::Role::Supervisor as i32, "{backend}");
        platform.stop().await;
    }
}

#[tokio::test]
async fn parallel_invites_never_overbook_the_last_seats() {
    for platform in Platform::all().await {
        let backend = platform.backend();
        let occupied = seats(&platform).await.occupied;
        set_seats(&platform, &platform.admin.token, occupied + 3)
            .await
            .unwrap();
        let attempts = (0..16).map(|i| {
            let token = platform.admin.token.clone();
            let platform = &platform;
            async move {
                invite(
                    platform,
                    &token,
                    &format!("rush{i}@console.test"),
                    dir::Role::Agent,
                )
                .await
            }
        });
        let results = futures::future::join_all(attempts).await;
        let codes: Vec<Code> = results.into_iter().map(code).collect();
        let ok = codes.iter().filter(|c| **c == Code::Ok).count();
        let full = codes
            .iter()
            .filter(|c| **c == Code::ResourceExhausted)
            .count();
        assert_eq!((ok, full), (3, 13), "{backend}: {codes:?}");
        let after = seats(&platform).await;
        assert_eq!((after.occupied, after.free), (occupied + 3, 0), "{backend}");
        let listed = platform
            .client()
            .list_agents(authed(
                &platform.admin.token,
                dir::ListAgentsRequest {
                    status: dir::AgentStatus::Invited as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.page.unwrap().total, 3, "{backend}");

        let refused = invite(
            &platform,
            &platform.admin.token,
            "late@console.test",
            dir::Role::Agent,
        )
        .await
        .unwrap_err();
        assert_eq!(
            refused.message(),
            format!(
                "no free seat: all {} licensed seats are occupied",
                occupied + 3
            )
        );
        let lower = set_seats(&platform, &platform.admin.token, occupied + 2)
            .await
            .unwrap_err();
        assert_eq!(lower.code(), Code::FailedPrecondition, "{backend}");
        platform.stop().await;
    }
}

#[tokio::test]
async fn an_invitation_goes_from_mail_to_sign_in_and_can_be_resent_or_revoked() {
    for platform in Platform::all().await {
        let backend = platform.backend();
        let supervisor = member(&platform, "sup@console.test", dir::Role::Supervisor).await;
        let invited = invite(
            &platform,
            &supervisor.token,
            "New.Agent@Console.test",
            dir::Role::Agent,
        )
        .await
        .unwrap();
        assert_eq!(
            invited.status,
            dir::AgentStatus::Invited as i32,
            "{backend}"
        );
        assert_eq!(invited.email, "new.agent@console.test");
        assert_eq!(invited.display_name, "new.agent");
        assert!(invited.invitation_expires_at_us > assist_runtime::time::now_us());
        let again = invite(
            &platform,
            &supervisor.token,
            "new.agent@console.test",
            dir::Role::Agent,
        )
        .await
        .unwrap_err();
        assert_eq!(again.code(), Code::AlreadyExists, "{backend}");

        let resent = platform
            .client()
            .resend_invitation(authed(
                &supervisor.token,
                dir::AgentRequest {
                    agent_id: invited.id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(resent.version > invited.version);

        // The agent follows the newest link, sets a password, signs in, and its first heartbeat
        // makes it an active member.
        let token = mailed_token(&platform, "new.agent@console.test").await;
        platform
            .identity
            .client
            .clone()
            .redeem_one_time_token(idp::RedeemOneTimeTokenRequest {
                token,
                new_password: PASSWORD.into(),
            })
            .await
            .unwrap();
        let signed_in = platform
            .identity
            .login(idp::Realm::BackOffice, "new.agent@console.test")
            .await;
        let beat = heartbeat(&platform, &signed_in, dir::Presence::Online)
            .await
            .unwrap();
        assert_eq!(beat.presence, dir::Presence::Online as i32);
        assert_eq!(beat.timeout_seconds, 60);
        let active = platform.get(&supervisor.token, &invited.id).await.unwrap();
        assert_eq!(active.status, dir::AgentStatus::Active as i32, "{backend}");
        assert_eq!(active.presence, dir::Presence::Online as i32);
        assert!(active.last_seen_at_us > 0);

        // A second invitation, revoked: removed, its seat free, its link dead.
        let before = seats(&platform).await;
        let other = invite(
            &platform,
            &supervisor.token,
            "other@console.test",
            dir::Role::Agent,
        )
        .await
        .unwrap();
        assert_eq!(seats(&platform).await.occupied, before.occupied + 1);
        let revoked = platform
            .client()
            .revoke_invitation(authed(
                &supervisor.token,
                dir::AgentRequest {
                    agent_id: other.id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            revoked.status,
            dir::AgentStatus::Removed as i32,
            "{backend}"
        );
        assert_eq!(seats(&platform).await.occupied, before.occupied);
        let token = mailed_token(&platform, "other@console.test").await;
        let dead = platform
            .identity
            .client
            .clone()
            .redeem_one_time_token(idp::RedeemOneTimeTokenRequest {
                token,
                new_password: PASSWORD.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(dead.code(), Code::FailedPrecondition, "{backend}");

        let history = platform
            .history(&supervisor.token, &invited.id)
            .await
            .unwrap();
        let actions: Vec<&str> = history.changes.iter().map(|c| c.action.as_str()).collect();
        assert_eq!(
            actions,
            ["activated", "invitation_resent", "invited"],
            "{backend}"
        );
        assert_eq!(history.changes[2].actor_id, supervisor.id);
        platform.stop().await;
    }
}

#[tokio::test]
async fn removal_needs_the_email_ends_sign_ins_frees_the_seat_and_keeps_the_history() {
    for platform in Platform::all().await {
        let backend = platform.backend();
        let email = "leaving@console.test";
        let leaving = platform
            .identity
            .back_office_user(&platform.admin, email, "Leaving Agent")
            .await;
        target(&platform, &leaving.id, dir::Role::Agent).await;
        platform
            .grant(
                &platform.admin.token,
                &leaving.id,
                dir::Capability::AssistMerchantUsers,
            )
            .await
            .unwrap();
        let pair = platform
            .identity
            .client
            .clone()
            .login(idp::LoginRequest {
                realm: idp::Realm::BackOffice as i32,
                email: email.into(),
                password: PASSWORD.into(),
                client_address: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let before = seats(&platform).await;

        let wrong = remove(
            &platform,
            &platform.admin.token,
            &leaving.id,
            "someone@console.test",
        )
        .await
        .unwrap_err();
        assert_eq!(wrong.code(), Code::InvalidArgument, "{backend}");
        assert_eq!(
            wrong.message(),
            "confirm_email: must repeat the agent's email"
        );
        let unchanged = platform
            .get(&platform.admin.token, &leaving.id)
            .await
            .unwrap();
        assert_eq!(
            unchanged.status,
            dir::AgentStatus::Active as i32,
            "nothing changed"
        );

        let removed = remove(
            &platform,
            &platform.admin.token,
            &leaving.id,
            "LEAVING@console.test",
        )
        .await
        .unwrap();
        assert_eq!(
            removed.status,
            dir::AgentStatus::Removed as i32,
            "{backend}"
        );
        assert!(removed.capabilities.is_empty());
        assert_eq!(seats(&platform).await.occupied, before.occupied - 1);
        // Sign-ins end: the refresh token is revoked and the password no longer signs in.
        let refresh = platform
            .identity
            .client
            .clone()
            .refresh(idp::RefreshRequest {
                refresh_token: pair.refresh_token,
            })
            .await;
        assert_eq!(code(refresh), Code::Unauthenticated, "{backend}");
        let login = platform
            .identity
            .client
            .clone()
            .login(idp::LoginRequest {
                realm: idp::Realm::BackOffice as i32,
                email: email.into(),
                password: PASSWORD.into(),
                client_address: String::new(),
            })
            .await;
        assert_eq!(code(login), Code::Unauthenticated, "{backend}");
        // The console refuses the removed agent's still-unexpired access token.
        let beat = heartbeat(&platform, &leaving.token, dir::Presence::Online).await;
        assert_eq!(code(beat), Code::PermissionDenied, "{backend}");
        // Removing again is idempotent; the history stays, with who did it.
        let again = remove(&platform, &platform.admin.token, &leaving.id, email)
            .await
            .unwrap();
        assert_eq!(again.version, removed.version);
        let history = platform
            .history(&platform.admin.token, &leaving.id)
            .await
            .unwrap();
        let last = &history.changes[0];
        assert_eq!(
            (last.action.as_str(), last.actor_id.as_str()),
            ("removed", platform.admin.id.as_str())
        );
        assert_eq!(
            last.after, r#"{"capabilities":[],"status":"removed"}"#,
            "{backend}"
        );
        let granted = platform
            .grant(&platform.admin.token, &leaving.id, CUSTOMERS)
            .await;
        assert_eq!(code(granted), Code::FailedPrecondition, "{backend}");
        platform.stop().await;
    }
}

/// The next event about agent `id` showing `presence`, within 10 s. (A watcher reads the agent when a
/// notice arrives, so on a busy machine a later state may already show.)
async fn next_of(
    events: &mut tonic::Streaming<dir::AgentEvent>,
    id: &str,
    presence: dir::Presence,
) -> dir::Agent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        if let Some(agent) = event
            .agent
            .filter(|a| a.id == id && a.presence == presence as i32)
        {
            return agent;
        }
    }
}

#[tokio::test]
async fn presence_times_out_and_every_change_reaches_watchers() {
    for db in TestDb::all().await {
        let platform = Platform::start_with(db, &["--presence-timeout-secs=2"]).await;
        let backend = platform.backend();
        let supervisor = member(&platform, "sup@console.test", dir::Role::Supervisor).await;
        let agent = member(&platform, "agent@console.test", dir::Role::Agent).await;
        let mut events = platform
            .client()
            .watch_agents(authed(&supervisor.token, dir::WatchAgentsRequest {}))
            .await
            .unwrap()
            .into_inner();
        loop {
            let event = events.message().await.unwrap().unwrap();
            if event.kind == dir::agent_event::Kind::Synced as i32 {
                break;
            }
        }
        let beat = heartbeat(&platform, &agent.token, dir::Presence::Online)
            .await
            .unwrap();
        assert_eq!(beat.timeout_seconds, 2);
        let online = next_of(&mut events, &agent.id, dir::Presence::Online).await;
        assert_eq!(online.presence, dir::Presence::Online as i32, "{backend}");
        let counts = platform
            .client()
            .list_agents(authed(&agent.token, dir::ListAgentsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .presence
            .unwrap();
        assert!(counts.online >= 1, "{backend}: {counts:?}");

        heartbeat(&platform, &agent.token, dir::Presence::Away)
            .await
            .unwrap();
        let away = next_of(&mut events, &agent.id, dir::Presence::Away).await;
        assert_eq!(away.presence, dir::Presence::Away as i32, "{backend}");
        // No more heartbeats: offline after the timeout, announced like any change.
        let offline = next_of(&mut events, &agent.id, dir::Presence::Offline).await;
        assert_eq!(offline.presence, dir::Presence::Offline as i32, "{backend}");
        assert!(offline.version > away.version);

        // Heartbeats are for console members acting as themselves.
        let stranger = platform
            .identity
            .back_office_user(&platform.admin, "stranger@console.test", "Stranger")
            .await;
        let refused = heartbeat(&platform, &stranger.token, dir::Presence::Online).await;
        assert_eq!(code(refused), Code::PermissionDenied, "{backend}");
        let unspecified = heartbeat(&platform, &agent.token, dir::Presence::Unspecified)
            .await
            .unwrap_err();
        assert_eq!(unspecified.message(), "presence: must be set");
        // A platform administrator's first heartbeat makes it the console's administrator.
        heartbeat(&platform, &platform.admin.token, dir::Presence::Online)
            .await
            .unwrap();
        let admin = platform
            .get(&platform.admin.token, &platform.admin.id)
            .await
            .unwrap();
        assert_eq!(
            (admin.role, admin.status),
            (
                dir::Role::Administrator as i32,
                dir::AgentStatus::Active as i32
            ),
            "{backend}"
        );
        platform.stop().await;
    }
}

#[tokio::test]
async fn bad_console_input_gets_a_clear_error_and_changes_nothing() {
    for platform in Platform::all().await {
        let backend = platform.backend();
        let token = platform.admin.token.clone();
        let before = seats(&platform).await;
        let cases = [
            (
                invite(&platform, &token, "not-an-email", dir::Role::Agent).await,
                "email: must be an email address",
            ),
            (
                invite(&platform, &token, "x@console.test", dir::Role::Unspecified).await,
                "role: must be set",
            ),
            (
                set_seats(&platform, &token, 0)
                    .await
                    .map(|_| dir::Agent::default()),
                "licensed: must be between 1 and 100000",
            ),
            (
                change_role(&platform, &token, "nope", dir::Role::Agent).await,
                "agent_id: must be a uuid",
            ),
            (
                remove(&platform, &token, &uuid::Uuid::now_v7().to_string(), "").await,
                "confirm_email: must repeat the agent's email",
            ),
        ];
        for (result, message) in cases {
            let status = result.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{backend}: {message}");
            assert_eq!(status.message(), message, "{backend}");
        }
        let id = target_user(&platform, "routed@console.test", dir::Role::Agent).await;
        for (capacity, skills, message) in [
            (Some(0), None, "capacity: must be between 1 and 100"),
            (
                None,
                Some(vec!["has space".to_owned()]),
                "skills: each skill is 1 to 32 of a-z, 0-9, _ and -",
            ),
        ] {
            let status = platform
                .client()
                .update_agent_routing(authed(
                    &token,
                    dir::UpdateAgentRoutingRequest {
                        agent_id: id.clone(),
                        capacity,
                        skills: skills.map(|skills| dir::SkillList { skills }),
                    },
                ))
                .await
                .unwrap_err();
            assert_eq!(status.message(), message, "{backend}");
        }
        let missing = remove(
            &platform,
            &token,
            &uuid::Uuid::now_v7().to_string(),
            "a@b.test",
        )
        .await;
        assert_eq!(code(missing), Code::NotFound, "{backend}");
        assert_eq!(
            seats(&platform).await.occupied,
            before.occupied + 1,
            "only the routed agent"
        );
        let agent = platform.get(&token, &id).await.unwrap();
        assert_eq!(
            (agent.capacity, agent.skills.len()),
            (5, 0),
            "{backend}: defaults kept"
        );
        platform.stop().await;
    }
}

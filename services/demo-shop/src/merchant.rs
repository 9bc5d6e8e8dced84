//! The merchant-portal pages under `/merchant-portal/`: the user's offers (price and stock), their
//! profile, and the sensitive pages an assisting agent is refused. Only merchant users get in.

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;

use crate::AppState;
use crate::caller::{Caller, SignedIn};
use crate::html::{Portal, Refusal, escape, page, price, respond, see_other};
use crate::input;
use crate::store::{Offer, Profile};
use crate::storefront::fields;

type Shared = State<Arc<AppState>>;
type Page = Result<Response, Refusal>;

/// The merchant portal's sensitive pages and their titles (the paths of
/// [`crate::MERCHANT_PORTAL_SENSITIVE`]).
pub const SENSITIVE_PAGES: &[(&str, &str)] = &[
    ("/merchant-portal/password", "Change password"),
    ("/merchant-portal/email", "Change email"),
    ("/merchant-portal/delete", "Delete account"),
];

/// What `#whoami` says: "First Last (Merchant)" as the token names them.
fn whoami(user: &SignedIn) -> String {
    let name = user.name.clone().unwrap_or_else(|| user.id.clone());
    match &user.merchant_name {
        Some(merchant) if !merchant.is_empty() => format!("{name} ({merchant})"),
        _ => name,
    }
}

fn portal_page(user: &SignedIn, title: &str, main: &str) -> Response {
    let whoami = whoami(user);
    respond(
        StatusCode::OK,
        page(Portal::MerchantPortal, title, &whoami, main),
    )
}

/// `GET /merchant-portal/`.
pub async fn home(Extension(caller): Extension<Caller>) -> Page {
    let user = caller.merchant_user()?;
    let main = "<h1>Merchant portal</h1>\n<p><a href=\"/merchant-portal/offers\">Your offers</a> · \
                <a href=\"/merchant-portal/profile\">Your profile</a></p>";
    Ok(portal_page(user, "Merchant portal", main))
}

/// `GET /merchant-portal/offers`: the offers table, one form per offer.
pub async fn offers(State(state): Shared, Extension(caller): Extension<Caller>) -> Page {
    let user = caller.merchant_user()?;
    let offers = state.with_store(|store| store.offers(&user.id).clone());
    let rows: String = offers.iter().map(offer_row).collect();
    let main = format!(
        "<h1>Your offers</h1>\n<table id=\"offers\"><thead><tr><th>Product</th><th>Price</th>\
         <th>Stock</th><th>Change</th></tr></thead>\n<tbody>\n{rows}</tbody></table>"
    );
    Ok(portal_page(user, "Your offers", &main))
}

fn offer_row(offer: &Offer) -> String {
    let id = escape(offer.id);
    let price = price(offer.price_cents);
    format!(
        "<tr data-offer=\"{id}\"><td class=\"product\">{product}</td><td class=\"price\">{price}</td>\
         <td class=\"stock\">{stock}</td><td><form method=\"post\" action=\"/merchant-portal/offers/{id}\">\
         <label>Price <input name=\"price\" value=\"{price}\" inputmode=\"decimal\" maxlength=\"9\"></label> \
         <label>Stock <input name=\"stock\" value=\"{stock}\" inputmode=\"numeric\" maxlength=\"7\"></label> \
         <button type=\"submit\">Save</button></form></td></tr>\n",
        product = escape(offer.product),
        stock = offer.stock,
    )
}

/// The fields of `POST /merchant-portal/offers/{id}`.
#[derive(Debug, Deserialize)]
pub struct OfferForm {
    #[serde(default)]
    price: String,
    #[serde(default)]
    stock: String,
}

/// `POST /merchant-portal/offers/{id}`: sets price and stock, back to the offers.
pub async fn update_offer(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    Path(offer): Path<String>,
    form: Result<Form<OfferForm>, FormRejection>,
) -> Page {
    let user = caller.merchant_user()?;
    let form = fields(form)?;
    let price = input::price(&form.price).map_err(Refusal::invalid)?;
    let stock = input::stock(&form.stock).map_err(Refusal::invalid)?;
    if !state.with_store(|store| store.update_offer(&user.id, &offer, price, stock)) {
        return Err(Refusal::not_found("No such offer."));
    }
    Ok(see_other("/merchant-portal/offers"))
}

/// `GET /merchant-portal/profile`.
pub async fn profile(State(state): Shared, Extension(caller): Extension<Caller>) -> Page {
    let user = caller.merchant_user()?;
    let profile = state.with_store(|store| store.profile(&user.id));
    let links: String = SENSITIVE_PAGES
        .iter()
        .map(|(path, title)| format!("<li><a href=\"{path}\">{}</a></li>", escape(title)))
        .collect();
    let main = format!(
        "<h1>Your profile</h1>\n<form method=\"post\" action=\"/merchant-portal/profile\">\
         <label>Display name <input name=\"displayName\" value=\"{}\" maxlength=\"100\"></label> \
         <button type=\"submit\">Save</button></form>\n<h2>Security</h2>\n<ul>{links}</ul>",
        escape(&profile.display_name),
    );
    Ok(portal_page(user, "Your profile", &main))
}

/// The fields of `POST /merchant-portal/profile`.
#[derive(Debug, Deserialize)]
pub struct ProfileForm {
    #[serde(default, rename = "displayName")]
    display_name: String,
}

/// `POST /merchant-portal/profile`: saves the display name, back to the profile.
pub async fn save_profile(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    form: Result<Form<ProfileForm>, FormRejection>,
) -> Page {
    let user = caller.merchant_user()?;
    let form = fields(form)?;
    let display_name = input::display_name(&form.display_name).map_err(Refusal::invalid)?;
    state.with_store(|store| {
        let phone = store.profile(&user.id).phone;
        store.set_profile(
            &user.id,
            Profile {
                display_name,
                phone,
            },
        );
    });
    Ok(see_other("/merchant-portal/profile"))
}

/// `GET` of a sensitive page: its (demo) form.
pub async fn sensitive_form(caller: Caller, path: &'static str, title: &'static str) -> Page {
    let user = caller.merchant_user()?;
    let main = format!(
        "<h1>{title}</h1>\n<form method=\"post\" action=\"{path}\">\
         <p>This is a demo: nothing is really changed.</p><button type=\"submit\">{title}</button></form>",
        title = escape(title),
    );
    Ok(portal_page(user, title, &main))
}

/// `POST` of a sensitive page: "done" (it is a demo).
pub async fn sensitive_done(caller: Caller, title: &'static str) -> Page {
    let user = caller.merchant_user()?;
    let main = format!(
        "<h1>{}</h1>\n<p id=\"done\">Done. (This is a demo: nothing was changed.)</p>",
        escape(title)
    );
    Ok(portal_page(user, title, &main))
}

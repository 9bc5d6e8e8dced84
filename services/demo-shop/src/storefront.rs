//! The storefront pages: products, the cart (kept by the shop for a signed-in customer, in a cookie for
//! a guest), the profile, and the sensitive account pages an assisting agent is refused.

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;

use crate::AppState;
use crate::caller::{Caller, SignedIn};
use crate::html::{Portal, Refusal, escape, page, price, respond, see_other};
use crate::input::{self, Checked};
use crate::store::{CATALOGUE, Cart, Product, Profile, add_to_cart, cart_lines};

type Shared = State<Arc<AppState>>;
type Page = Result<Response, Refusal>;

/// The storefront's sensitive pages and their titles (the paths of [`crate::STOREFRONT_SENSITIVE`]).
pub const SENSITIVE_PAGES: &[(&str, &str)] = &[
    ("/account/password", "Change password"),
    ("/account/email", "Change email"),
    ("/account/payment-methods", "Payment methods"),
    ("/account/delete", "Delete account"),
];

/// The fields of a form, or the 400 page when it cannot be read.
pub fn fields<T>(form: Result<Form<T>, FormRejection>) -> Result<T, Refusal> {
    form.map(|Form(fields)| fields)
        .map_err(|rejection| Refusal::invalid(format!("The form could not be read: {rejection}")))
}

/// What `#whoami` says on a storefront page: the customer's name (or id), or "Guest".
fn whoami(caller: &Caller) -> String {
    match caller.customer() {
        Some(customer) => customer.name.clone().unwrap_or_else(|| customer.id.clone()),
        None => "Guest".to_owned(),
    }
}

/// The signed-in customer, or the 401 page.
fn customer(caller: &Caller) -> Result<&SignedIn, Refusal> {
    caller
        .customer()
        .ok_or_else(|| Refusal::sign_in("Sign in to see your account."))
}

fn storefront_page(title: &str, whoami: &str, main: &str) -> Response {
    respond(
        StatusCode::OK,
        page(Portal::Storefront, title, whoami, main),
    )
}

/// `GET /`: the catalogue.
pub async fn home(Extension(caller): Extension<Caller>) -> Response {
    let products: String = CATALOGUE.iter().map(product_card).collect();
    let main = format!("<h1>Demo shop</h1>\n{products}");
    storefront_page("Demo shop", &whoami(&caller), &main)
}

fn product_card(product: &Product) -> String {
    let sku = escape(product.sku);
    format!(
        "<div class=\"product\" data-sku=\"{sku}\"><h2>{name}</h2><p class=\"price\">{price}</p>\n\
         <form method=\"post\" action=\"/cart/items\"><input type=\"hidden\" name=\"sku\" value=\"{sku}\">\
         <label>Quantity <input type=\"number\" name=\"quantity\" value=\"1\" min=\"1\" max=\"99\"></label> \
         <button type=\"submit\">Add to cart</button></form></div>\n",
        name = escape(product.name),
        price = price(product.price_cents),
    )
}

/// The cart of this request's caller: the shop's for a customer, the cookie's for anyone else.
fn current_cart(state: &AppState, caller: &Caller, headers: &HeaderMap) -> Cart {
    match caller.customer() {
        Some(customer) => state.with_store(|store| store.cart(&customer.id)),
        None => input::guest_cart(headers),
    }
}

/// `GET /cart`.
pub async fn cart(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let cart = current_cart(&state, &caller, &headers);
    let main = format!("<h1>Your cart</h1>\n{}", cart_table(&cart));
    storefront_page("Your cart", &whoami(&caller), &main)
}

fn cart_table(cart: &Cart) -> String {
    let lines = cart_lines(cart);
    if lines.is_empty() {
        return "<p id=\"cart-empty\">Your cart is empty.</p>".to_owned();
    }
    let rows: String = lines
        .iter()
        .map(|(product, quantity)| {
            let sku = escape(product.sku);
            format!(
                "<tr data-sku=\"{sku}\"><td class=\"name\">{name}</td><td class=\"quantity\">{quantity}</td>\
                 <td class=\"total\">{total}</td><td><form method=\"post\" action=\"/cart/items/{sku}/remove\">\
                 <button type=\"submit\">Remove</button></form></td></tr>\n",
                name = escape(product.name),
                total = price(product.price_cents * u64::from(*quantity)),
            )
        })
        .collect();
    let total: u64 = lines
        .iter()
        .map(|(product, quantity)| product.price_cents * u64::from(*quantity))
        .sum();
    format!(
        "<table id=\"cart\"><thead><tr><th>Product</th><th>Quantity</th><th>Total</th><th></th></tr></thead>\n\
         <tbody>\n{rows}</tbody></table>\n<p id=\"cart-total\">Total: {}</p>",
        price(total)
    )
}

/// The fields of `POST /cart/items`.
#[derive(Debug, Deserialize)]
pub struct AddItem {
    #[serde(default)]
    sku: String,
    #[serde(default)]
    quantity: String,
}

/// `POST /cart/items`: adds to the cart, back to `/cart`.
pub async fn add_item(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    form: Result<Form<AddItem>, FormRejection>,
) -> Page {
    let form = fields(form)?;
    let product = input::sku(&form.sku).map_err(Refusal::invalid)?;
    let quantity = input::quantity(&form.quantity).map_err(Refusal::invalid)?;
    change_cart(&state, &caller, &headers, |cart| {
        add_to_cart(cart, product, quantity)
    })
}

/// `POST /cart/items/{sku}/remove`: takes a product out of the cart, back to `/cart`.
pub async fn remove_item(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(sku): Path<String>,
) -> Page {
    let product = input::sku(&sku).map_err(|_| Refusal::not_found("No such product."))?;
    change_cart(&state, &caller, &headers, |cart| {
        cart.remove(product.sku);
        Ok(())
    })
}

/// Applies `change` to the caller's cart (nothing changes when it is refused) and redirects to `/cart`.
fn change_cart(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    change: impl FnOnce(&mut Cart) -> Checked<()>,
) -> Page {
    if let Some(customer) = caller.customer() {
        state
            .with_store(|store| -> Checked<()> {
                let mut cart = store.cart(&customer.id);
                change(&mut cart)?;
                store.set_cart(&customer.id, cart);
                Ok(())
            })
            .map_err(Refusal::invalid)?;
        return Ok(see_other("/cart"));
    }
    let mut cart = input::guest_cart(headers);
    change(&mut cart).map_err(Refusal::invalid)?;
    let mut response = see_other("/cart");
    let cookie = HeaderValue::from_str(&input::guest_cart_cookie(&cart))
        .expect("cart cookies are made of catalogue skus and numbers");
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `GET /account`: the profile form and the links to the sensitive pages.
pub async fn account(State(state): Shared, Extension(caller): Extension<Caller>) -> Page {
    let customer = customer(&caller)?;
    let profile = state.with_store(|store| store.profile(&customer.id));
    let links: String = SENSITIVE_PAGES
        .iter()
        .map(|(path, title)| format!("<li><a href=\"{path}\">{}</a></li>", escape(title)))
        .collect();
    let main = format!(
        "<h1>Your account</h1>\n<form method=\"post\" action=\"/account\">\
         <label>Display name <input name=\"displayName\" value=\"{name}\" maxlength=\"100\"></label> \
         <label>Phone <input name=\"phone\" value=\"{phone}\" maxlength=\"30\"></label> \
         <button type=\"submit\">Save</button></form>\n<h2>Security</h2>\n<ul>{links}</ul>",
        name = escape(&profile.display_name),
        phone = escape(&profile.phone),
    );
    Ok(storefront_page("Your account", &whoami(&caller), &main))
}

/// The fields of `POST /account`.
#[derive(Debug, Deserialize)]
pub struct AccountForm {
    #[serde(default, rename = "displayName")]
    display_name: String,
    #[serde(default)]
    phone: String,
}

/// `POST /account`: saves the profile, back to `/account`.
pub async fn save_account(
    State(state): Shared,
    Extension(caller): Extension<Caller>,
    form: Result<Form<AccountForm>, FormRejection>,
) -> Page {
    let customer = customer(&caller)?;
    let form = fields(form)?;
    let profile = Profile {
        display_name: input::display_name(&form.display_name).map_err(Refusal::invalid)?,
        phone: input::phone(&form.phone).map_err(Refusal::invalid)?,
    };
    state.with_store(|store| store.set_profile(&customer.id, profile));
    Ok(see_other("/account"))
}

/// `GET` of a sensitive page: its (demo) form. Assisting agents never get here: the token policy
/// refuses them these paths.
pub async fn sensitive_form(caller: Caller, path: &'static str, title: &'static str) -> Page {
    customer(&caller)?;
    let main = format!(
        "<h1>{title}</h1>\n<form method=\"post\" action=\"{path}\">\
         <p>This is a demo: nothing is really changed.</p><button type=\"submit\">{title}</button></form>",
        title = escape(title),
    );
    Ok(storefront_page(title, &whoami(&caller), &main))
}

/// `POST` of a sensitive page: "done" (it is a demo).
pub async fn sensitive_done(caller: Caller, title: &'static str) -> Page {
    customer(&caller)?;
    let main = format!(
        "<h1>{}</h1>\n<p id=\"done\">Done. (This is a demo: nothing was changed.)</p>",
        escape(title)
    );
    Ok(storefront_page(title, &whoami(&caller), &main))
}

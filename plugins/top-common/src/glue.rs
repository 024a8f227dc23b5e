//! The WIT glue every TOP adapter needs: adapter-kit's, plus the TOP form POST.

/// Writes a private module `glue` into an adapter crate: everything `adapter_kit::wit_glue!`
/// writes (conversions between the WIT records and [`crate::contract`]), plus `send`, the
/// `signed-http` call of a TOP API as a closure-friendly function.
///
/// Invoke it at the crate root, after `wit_bindgen::generate!({ path: "../../wit/adapter@0.2.0",
/// world: "plugin" })`; `top_common::wit_glue!(@v0_1)` after a 0.1.0 `generate!` (see
/// `adapter_kit::wit_glue!`):
///
/// ```text
/// wit_bindgen::generate!({ path: "../../wit/adapter@0.2.0", world: "plugin" });
/// top_common::wit_glue!();
///
/// impl Guest for MyAdapter {
///     fn describe() -> t::AdapterInfo {
///         glue::info_to_wit(&api::INFO)
///     }
///     fn send_coupon(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
///         let req = glue::send_request_from_wit(req);
///         api::send_coupon(&req, &settings::get, glue::send)
///             .map(glue::outcome_to_wit)
///             .map_err(glue::error_to_wit)
///     }
///     // ...
/// }
/// ```
#[macro_export]
macro_rules! wit_glue {
    ($(@$version:ident)?) => {
        $crate::__adapter_kit::wit_glue! {
            $(@$version)?
            /// Every TOP call is a signed form POST: the host adds and signs the system
            /// parameters (written by `top_common::wit_glue!`).
            pub(crate) fn send(
                req: &$crate::HttpRequest,
            ) -> ::core::result::Result<$crate::HttpResponse, $crate::HttpError> {
                let request = http::Request {
                    method: http::Method::Post,
                    url: req.url.clone(),
                    headers: ::std::vec::Vec::new(),
                    params: req.params.clone(),
                    body: ::core::option::Option::None,
                };
                match http::send(&request) {
                    ::core::result::Result::Ok(response) => {
                        ::core::result::Result::Ok($crate::HttpResponse {
                            status: response.status,
                            body: response.body,
                        })
                    }
                    ::core::result::Result::Err(error) => {
                        ::core::result::Result::Err(http_error_from_wit(error))
                    }
                }
            }
        }
    };
}

/// Writes the exported adapter of a TOP crate whose `api` module has the conventional shape:
/// `api::INFO`, `api::send_coupon(&SendRequest, settings, send)` and
/// `api::query_coupons(&Recipient, &options, settings, send)`. Invoke it after
/// [`wit_glue!`]: `top_common::export_adapter!(MyAdapter);`
#[macro_export]
macro_rules! export_adapter {
    ($name:ident) => {
        /// The exported `coupon:adapter/adapter` implementation.
        pub struct $name;

        // Only the component exports the ABI symbols: native linkers reject the `:` in their
        // names, and natively the imports are `unreachable!()` stubs, so native tests cover
        // `api` only.
        #[cfg(target_arch = "wasm32")]
        export!($name);

        impl exports::coupon::adapter::adapter::Guest for $name {
            fn describe() -> coupon::adapter::types::AdapterInfo {
                glue::info_to_wit(&api::INFO)
            }

            fn send_coupon(
                req: coupon::adapter::types::SendRequest,
            ) -> ::core::result::Result<
                coupon::adapter::types::SendOutcome,
                coupon::adapter::types::AdapterError,
            > {
                let req = glue::send_request_from_wit(req);
                api::send_coupon(&req, &coupon::adapter::settings::get, glue::send)
                    .map(glue::outcome_to_wit)
                    .map_err(glue::error_to_wit)
            }

            fn query_coupons(
                req: coupon::adapter::types::QueryRequest,
            ) -> ::core::result::Result<
                ::std::vec::Vec<coupon::adapter::types::Coupon>,
                coupon::adapter::types::AdapterError,
            > {
                let recipient = glue::recipient_from_wit(req.recipient);
                let coupons = api::query_coupons(
                    &recipient,
                    &req.options,
                    &coupon::adapter::settings::get,
                    glue::send,
                )
                .map_err(glue::error_to_wit)?;
                ::core::result::Result::Ok(coupons.into_iter().map(glue::coupon_to_wit).collect())
            }
        }
    };
}

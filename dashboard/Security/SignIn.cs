using System.Net;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace MedServe.Dashboard.Security;

/// <summary>
/// Web sign-in with an API key: a plain HTML form (antiforgery token included) that sets an HTTP-only, same-site
/// session cookie carrying the key's id and role, never the key. Sign-out is a POST with its token too.
/// </summary>
public static class SignIn
{
    public const string Path = "/signin";
    public const string OutPath = "/signout";
    public const string DeniedPath = "/denied";
    public const string CookieName = "medserve.session";

    public static IEndpointRouteBuilder MapSignIn(this IEndpointRouteBuilder app)
    {
        app.MapGet(Path, (HttpContext context, IAntiforgery antiforgery, IOptions<SecurityOptions> security, string? returnUrl, string? error) =>
            Page(context, antiforgery, security.Value, Local(returnUrl), error)).AllowAnonymous();
        app.MapPost(Path, async ([FromForm] string? key, [FromForm] string? returnUrl, HttpContext context, KeyValidator keys, AuditWriter audit) =>
        {
            var target = Local(returnUrl);
            var (info, refusal) = string.IsNullOrWhiteSpace(key) ? (null, "enter a key") : await keys.ValidateAsync(key.Trim());
            audit.Record(new AuditEvent
            {
                // A refused key is named by the id it claims (never the key), or not at all.
                Actor = info?.Id ?? (key is not null ? ApiKeys.IdOf(key.Trim()) : null) ?? "unknown",
                Action = AuditActions.SignIn,
                Outcome = info is null ? "refused" : "ok",
            });
            if (info is null)
            {
                return Results.Redirect($"{Path}?error={Uri.EscapeDataString(refusal!)}&returnUrl={Uri.EscapeDataString(target)}");
            }
            await context.SignInAsync(CookieAuthenticationDefaults.AuthenticationScheme,
                MedServeClaims.Principal(info.Id, info.Name, info.Role, CookieAuthenticationDefaults.AuthenticationScheme));
            return Results.Redirect(target);
        }).AllowAnonymous();
        app.MapGet(Path + "/oidc", (string? returnUrl) => Results.Challenge(
            new Microsoft.AspNetCore.Authentication.AuthenticationProperties { RedirectUri = Local(returnUrl) }, [IdentityProviders.OidcScheme])).AllowAnonymous();
        app.MapPost(OutPath, async (HttpContext context) =>
        {
            await context.SignOutAsync(CookieAuthenticationDefaults.AuthenticationScheme);
            return Results.Redirect(Path);
        }).AllowAnonymous();
        app.MapGet(DeniedPath, () => Results.Content(Html("Not allowed", """
            <h1>Not allowed</h1>
            <p>Your key's role may not open that page. <a href="/">Back to the models</a>, or
            <a href="/signin">sign in with another key</a>.</p>
            """), "text/html")).AllowAnonymous();
        return app;
    }

    /// <summary>Only paths on this site: an open redirect would let a link send people elsewhere after sign-in.</summary>
    private static string Local(string? url) =>
        url is { Length: > 0 } && url.StartsWith('/') && !url.StartsWith("//", StringComparison.Ordinal) && !url.StartsWith("/\\", StringComparison.Ordinal) ? url : "/";

    private static IResult Page(HttpContext context, IAntiforgery antiforgery, SecurityOptions security, string returnUrl, string? error)
    {
        var tokens = antiforgery.GetAndStoreTokens(context);
        var message = error is null ? "" : $"""<p class="error" id="signin-error">{WebUtility.HtmlEncode(error)}</p>""";
        var oidc = security.OidcConfigured
            ? $"""<p><a href="{Path}/oidc?returnUrl={Uri.EscapeDataString(returnUrl)}" id="signin-oidc">Sign in with your organisation's account</a></p>"""
            : "";
        var insecure = security.InsecureDev ? """<p class="warn">Insecure development mode: calls without a key act as admin.</p>""" : "";
        return Results.Content(Html("Sign in", $"""
            <h1>MedServe</h1>
            <p>Sign in with an API key. An administrator creates keys (Keys page, <code>medserve keys create</code>); the first
            admin key is printed once when a cluster first starts, or set with <code>MEDSERVE_ADMIN_KEY</code>.</p>
            {insecure}{message}{oidc}
            <form method="post" action="{Path}">
              <input type="hidden" name="{tokens.FormFieldName}" value="{WebUtility.HtmlEncode(tokens.RequestToken)}" />
              <input type="hidden" name="returnUrl" value="{WebUtility.HtmlEncode(returnUrl)}" />
              <label for="key">API key</label>
              <input id="key" name="key" type="password" autocomplete="current-password" autofocus required />
              <button type="submit" id="signin-button">Sign in</button>
            </form>
            """), "text/html");
    }

    private static string Html(string title, string body) => $$"""
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8" /><meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{{title}} · MedServe</title>
        <style>
          body { font-family: Roboto, system-ui, sans-serif; background: #f5f5f5; margin: 0; }
          main { max-width: 440px; margin: 12vh auto; background: #fff; padding: 2rem 2.5rem; border-radius: 6px; box-shadow: 0 1px 4px rgba(0,0,0,.2); }
          h1 { color: #004d40; margin-top: 0; } label { display: block; margin: 1rem 0 .3rem; font-weight: 500; }
          input[type=password] { width: 100%; box-sizing: border-box; padding: .6rem; font-size: 1rem; border: 1px solid #bbb; border-radius: 4px; }
          button { margin-top: 1.2rem; background: #00695c; color: #fff; border: 0; padding: .7rem 1.4rem; font-size: 1rem; border-radius: 4px; cursor: pointer; }
          .error { color: #b71c1c; } .warn { background: #fff3cd; padding: .6rem; } code { font-size: .9em; }
        </style></head>
        <body><main>{{body}}</main></body></html>
        """;
}

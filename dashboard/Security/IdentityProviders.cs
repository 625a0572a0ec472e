using System.Security.Claims;
using System.Text;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;

namespace MedServe.Dashboard.Security;

/// <summary>
/// An identity provider's tokens, when configured (section <c>MedServe:Jwt</c> for services' bearer tokens,
/// <c>MedServe:Oidc</c> for people's sign-in). Its role claim (<c>RoleClaim</c>, default <c>roles</c>) names a MedServe
/// role; a token without a valid one gets no permissions (403 everywhere).
/// </summary>
public sealed class IdentityProviderOptions
{
    /// <summary>The issuer (OpenID Connect discovery at <c>{Authority}/.well-known/openid-configuration</c>).</summary>
    public string? Authority { get; set; }

    public string? Audience { get; set; }

    /// <summary>OIDC: the app's client id and secret at the provider.</summary>
    public string? ClientId { get; set; }

    public string? ClientSecret { get; set; }

    /// <summary>JWT only: a shared HMAC key (at least 32 bytes) instead of an authority, for a service that signs its own tokens (and tests).</summary>
    public string? SigningKey { get; set; }

    /// <summary>JWT only: the issuer expected with <see cref="SigningKey"/>.</summary>
    public string? Issuer { get; set; }

    public string RoleClaim { get; set; } = "roles";

    /// <summary>
    /// Whether the authority must be https (default true). Turn off only for a provider on the same trusted host
    /// (a development provider, the tests' one): tokens and the discovery document travel in clear otherwise.
    /// </summary>
    public bool RequireHttpsMetadata { get; set; } = true;

    public bool Configured => !string.IsNullOrEmpty(Authority) || !string.IsNullOrEmpty(SigningKey);
}

public static class IdentityProviders
{
    public const string JwtScheme = JwtBearerDefaults.AuthenticationScheme;
    public const string OidcScheme = OpenIdConnectDefaults.AuthenticationScheme;

    /// <summary>Adds JWT bearer and OpenID Connect when their sections are configured; answers which were added.</summary>
    public static (bool Jwt, bool Oidc) AddIdentityProviders(this AuthenticationBuilder auth, Microsoft.Extensions.Configuration.IConfiguration configuration)
    {
        var jwt = configuration.GetSection("MedServe:Jwt").Get<IdentityProviderOptions>() ?? new();
        var oidc = configuration.GetSection("MedServe:Oidc").Get<IdentityProviderOptions>() ?? new();
        if (jwt.Configured)
        {
            auth.AddJwtBearer(JwtScheme, o =>
            {
                o.MapInboundClaims = false;
                if (!string.IsNullOrEmpty(jwt.Authority))
                {
                    o.Authority = jwt.Authority;
                }
                o.TokenValidationParameters = new TokenValidationParameters
                {
                    ValidateAudience = !string.IsNullOrEmpty(jwt.Audience),
                    ValidAudience = jwt.Audience,
                    ValidateIssuer = !string.IsNullOrEmpty(jwt.Issuer) || !string.IsNullOrEmpty(jwt.Authority),
                    ValidIssuer = jwt.Issuer,
                    IssuerSigningKey = string.IsNullOrEmpty(jwt.SigningKey) ? null : new SymmetricSecurityKey(Encoding.UTF8.GetBytes(jwt.SigningKey)),
                    RoleClaimType = jwt.RoleClaim,
                    NameClaimType = "sub",
                };
                o.Events = new JwtBearerEvents
                {
                    OnTokenValidated = context =>
                    {
                        context.Principal = Map(context.Principal!, jwt.RoleClaim, JwtScheme);
                        return Task.CompletedTask;
                    },
                };
            });
        }
        if (oidc.Configured && !string.IsNullOrEmpty(oidc.ClientId))
        {
            auth.AddOpenIdConnect(OidcScheme, o =>
            {
                o.Authority = oidc.Authority;
                o.RequireHttpsMetadata = oidc.RequireHttpsMetadata;
                o.ClientId = oidc.ClientId;
                o.ClientSecret = oidc.ClientSecret;
                o.ResponseType = "code";
                o.UsePkce = true;
                o.MapInboundClaims = false;
                o.SaveTokens = false;
                o.SignInScheme = CookieAuthenticationDefaults.AuthenticationScheme;
                o.Scope.Add("profile");
                o.Events = new OpenIdConnectEvents
                {
                    OnTokenValidated = context =>
                    {
                        context.Principal = Map(context.Principal!, oidc.RoleClaim, CookieAuthenticationDefaults.AuthenticationScheme);
                        // Sign-in through the provider is audited like sign-in with a key: who (idp:{sub}), never the token.
                        context.HttpContext.RequestServices.GetRequiredService<AuditWriter>().Record(new AuditEvent
                        {
                            Actor = context.Principal.FindFirst(MedServeClaims.KeyId)?.Value ?? "unknown",
                            Action = AuditActions.SignIn,
                            Outcome = "ok",
                        });
                        return Task.CompletedTask;
                    },
                    OnRemoteFailure = context =>
                    {
                        // A refused or broken answer from the provider: audited without anything it carried, and the
                        // person sent back to the sign-in page with a message instead of an exception page.
                        context.HttpContext.RequestServices.GetRequiredService<AuditWriter>().Record(new AuditEvent
                        {
                            Actor = "unknown",
                            Action = AuditActions.SignIn,
                            Outcome = "refused",
                        });
                        context.Response.Redirect(SignIn.Path + "?error=" + Uri.EscapeDataString("the identity provider did not sign you in; try again or use an API key"));
                        context.HandleResponse();
                        return Task.CompletedTask;
                    },
                };
            });
        }
        return (jwt.Configured, oidc.Configured && !string.IsNullOrEmpty(oidc.ClientId));
    }

    /// <summary>
    /// The provider's principal as MedServe's: id <c>idp:{sub}</c> (what the audit trail names), its MedServe role and
    /// that role's permissions; no valid role, no permissions.
    /// </summary>
    private static ClaimsPrincipal Map(ClaimsPrincipal principal, string roleClaim, string scheme)
    {
        var subject = principal.FindFirst("sub")?.Value ?? principal.FindFirst(ClaimTypes.NameIdentifier)?.Value ?? "unknown";
        var role = principal.FindAll(roleClaim).Select(c => c.Value).Where(Roles.IsValid)
            .OrderByDescending(r => Roles.PermissionsOf(r).Count).FirstOrDefault();
        var name = principal.FindFirst("name")?.Value ?? principal.FindFirst("preferred_username")?.Value ?? subject;
        if (role is null)
        {
            var identity = new ClaimsIdentity([new Claim(MedServeClaims.KeyId, "idp:" + subject), new Claim(ClaimTypes.Name, name)], scheme, ClaimTypes.Name, ClaimTypes.Role);
            return new ClaimsPrincipal(identity);
        }
        return MedServeClaims.Principal("idp:" + subject, name, role, scheme);
    }
}

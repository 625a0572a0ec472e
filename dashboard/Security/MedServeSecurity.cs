using System.Collections.Concurrent;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Infrastructure;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace MedServe.Dashboard.Security;

/// <summary>How the node protects itself (section <c>MedServe</c>; <c>MEDSERVE_ADMIN_KEY</c> sets <see cref="AdminKey"/>).</summary>
public sealed class SecurityOptions
{
    /// <summary>An admin key given by the operator (any string); it authenticates as admin alongside stored keys.</summary>
    public string? AdminKey { get; set; }

    /// <summary>Development only: calls without credentials act as admin, and every page says so.</summary>
    public bool InsecureDev { get; set; }

    /// <summary>Whether <c>/metrics</c> answers without a key (Prometheus scrapers); false asks for the operate permission.</summary>
    public bool AnonymousMetrics { get; set; } = true;

    /// <summary>Whether every inference is audited (default). Off only to measure what auditing costs (bench/).</summary>
    public bool AuditInference { get; set; } = true;

    /// <summary>Whether people may sign in through the OpenID Connect provider (<c>MedServe:Oidc</c>); set from configuration.</summary>
    public bool OidcConfigured { get; set; }

    /// <summary>How long a checked key is trusted before it is checked again (a revocation takes effect within this).</summary>
    public TimeSpan KeyCacheTime { get; set; } = TimeSpan.FromSeconds(5);
}

/// <summary>Claims MedServe puts on a principal.</summary>
public static class MedServeClaims
{
    public const string KeyId = "medserve.key";
    public const string Permission = "medserve.permission";

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string KeyId, string Name, string Role, string Scheme), ClaimsPrincipal> Principals = new();

    /// <summary>
    /// The principal of a key, made once per key id, name, role and scheme and shared by that key's requests (a
    /// principal is a dozen claims: not worth making again for every inference). Nothing in MedServe changes a
    /// principal after authentication.
    /// </summary>
    public static ClaimsPrincipal KeyPrincipal(string keyId, string name, string role, string scheme)
    {
        var key = (keyId, name, role, scheme);
        if (Principals.TryGetValue(key, out var known))
        {
            return known;
        }
        // Bounded: counted only when a principal is added (ConcurrentDictionary.Count takes every lock).
        if (Principals.Count > 10_000)
        {
            Principals.Clear();
        }
        return Principals.GetOrAdd(key, static k => Principal(k.KeyId, k.Name, k.Role, k.Scheme));
    }

    /// <summary>The principal of a key: its id (never the key), name, role and the role's permissions.</summary>
    public static ClaimsPrincipal Principal(string keyId, string name, string role, string scheme)
    {
        var claims = new List<Claim>
        {
            new(ClaimTypes.NameIdentifier, keyId),
            new(KeyId, keyId),
            new(ClaimTypes.Name, name),
            new(ClaimTypes.Role, role),
        };
        claims.AddRange(Roles.PermissionsOf(role).Select(p => new Claim(Permission, p)));
        return new ClaimsPrincipal(new ClaimsIdentity(claims, scheme, ClaimTypes.Name, ClaimTypes.Role));
    }

    public static bool Has(this ClaimsPrincipal user, string permission) => user.HasClaim(Permission, permission);

    public static string KeyIdOf(this ClaimsPrincipal user) => user.FindFirst(KeyId)?.Value ?? "anonymous";
}

/// <summary>
/// Checks presented keys: the operator's admin key, or a stored key by its id and hash (through
/// <see cref="IKeyStoreGrain"/>), with a short cache so a request does not cost a grain call.
/// </summary>
public sealed class KeyValidator(IGrainFactory grains, IOptions<SecurityOptions> options, TimeProvider clock)
{
    /// <summary>The principal id of the operator's admin key.</summary>
    public const string OperatorKeyId = "admin-env";

    private static readonly ApiKeyInfo OperatorKey = new() { Id = OperatorKeyId, Name = "MEDSERVE_ADMIN_KEY", Role = Roles.Admin };

    // Keys presented lately, by the presented string itself: a key that calls again within the cache time costs one
    // dictionary look-up, not a SHA-256 of the key and a grain call (the string is in this process's memory anyway, in
    // the request's header; the dictionary hashes it with the runtime's randomised string hash).
    private readonly ConcurrentDictionary<string, (ApiKeyInfo Info, DateTimeOffset Until)> _presented = new(StringComparer.Ordinal);
    private readonly byte[]? _adminKeyHash = options.Value.AdminKey is { Length: > 0 } k ? SHA256.HashData(Encoding.UTF8.GetBytes(k)) : null;

    /// <summary>The key's record, or the reason it is refused (in words safe to show: never the key).</summary>
    public async ValueTask<(ApiKeyInfo? Key, string? Refusal)> ValidateAsync(string key)
    {
        var now = clock.GetUtcNow();
        if (_presented.TryGetValue(key, out var known) && known.Until > now)
        {
            return known.Info.Refusal(now) is { } refused ? (null, refused) : (known.Info, null);
        }
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(key));
        if (_adminKeyHash is not null && CryptographicOperations.FixedTimeEquals(hash, _adminKeyHash))
        {
            Remember(key, OperatorKey, DateTimeOffset.MaxValue);
            return (OperatorKey, null);
        }
        if (ApiKeys.IdOf(key) is not { } id)
        {
            return (null, "the key is not a MedServe key");
        }
        var check = await grains.GetGrain<IKeyStoreGrain>(0).FindAsync(id);
        if (check is null || !CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(check.Sha256), Encoding.ASCII.GetBytes(Convert.ToHexStringLower(hash))))
        {
            return (null, "the key is not known");
        }
        Remember(key, check.Info, now + options.Value.KeyCacheTime);
        return check.Info.Refusal(now) is { } refusal ? (null, refusal) : (check.Info, null);
    }

    private void Remember(string key, ApiKeyInfo info, DateTimeOffset until)
    {
        // Bounded: counted only when a key is added (ConcurrentDictionary.Count takes every lock).
        if (_presented.Count > 10_000)
        {
            _presented.Clear();
        }
        _presented[key] = (info, until);
    }

    /// <summary>Whether a signed-in key (by id) is still good: a revoked or expired key ends its web sessions too.</summary>
    public async Task<bool> StillValidAsync(string keyId)
    {
        if (keyId == OperatorKeyId)
        {
            return _adminKeyHash is not null;
        }
        var check = await grains.GetGrain<IKeyStoreGrain>(0).FindAsync(keyId);
        return check is not null && check.Info.Refusal(clock.GetUtcNow()) is null;
    }
}

/// <summary><c>Authorization: Bearer &lt;key&gt;</c> for services, the CLI over HTTP and V2 clients.</summary>
public sealed partial class ApiKeyHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder,
    KeyValidator keys, IOptions<SecurityOptions> security)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";

    /// <summary>The principal every credential-less call gets with <c>--insecure-dev</c>.</summary>
    public const string InsecureDevId = "insecure-dev";

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var header = Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return security.Value.InsecureDev
                ? Success(MedServeClaims.Principal(InsecureDevId, "insecure development mode", Roles.Admin, SchemeName))
                : AuthenticateResult.NoResult();
        }
        var (key, refusal) = await keys.ValidateAsync(header["Bearer ".Length..].Trim());
        if (key is null)
        {
            Refused(Logger, refusal!);
            return AuthenticateResult.Fail(refusal!);
        }
        return Success(MedServeClaims.KeyPrincipal(key.Id, key.Name, key.Role, SchemeName));
    }

    private AuthenticateResult Success(ClaimsPrincipal principal) => AuthenticateResult.Success(new AuthenticationTicket(principal, SchemeName));

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = "Bearer";
        var failure = (await HandleAuthenticateOnceSafeAsync()).Failure?.Message;
        await Response.WriteAsJsonAsync(new { error = failure is null ? "send an API key: Authorization: Bearer <key>" : $"{failure}: send a valid API key" });
    }

    protected override async Task HandleForbiddenAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status403Forbidden;
        await Response.WriteAsJsonAsync(new { error = "this key's role may not do this" });
    }

    [LoggerMessage(4001, LogLevel.Information, "An API key was refused: {Reason}")]
    private static partial void Refused(ILogger logger, string reason);
}

public static class SecurityHosting
{
    /// <summary>Lets <c>--insecure-dev</c> stand alone on a command line (configuration switches take a value).</summary>
    public static string[] ExpandFlags(string[] args) =>
        [.. args.SelectMany((a, i) => a == "--insecure-dev" && (i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal)) ? new[] { a, "true" } : [a])];

    public static IServiceCollection AddMedServeSecurity(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<SecurityOptions>().Bind(configuration.GetSection("MedServe")).Configure(o =>
        {
            if (string.IsNullOrEmpty(o.AdminKey) && Environment.GetEnvironmentVariable("MEDSERVE_ADMIN_KEY") is { Length: > 0 } k)
            {
                o.AdminKey = k;
            }
        });
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<KeyValidator>();
        services.AddSingleton<AuditWriter>();
        services.AddHostedService(sp => sp.GetRequiredService<AuditWriter>());
        var jwtConfigured = (configuration.GetSection("MedServe:Jwt").Get<IdentityProviderOptions>() ?? new()).Configured;
        // A bearer key is the common case (every V2 call): its handler is the default scheme and handles it itself; it
        // hands anything else on to the scheme that owns it (a token to the identity provider's, no header to the
        // sign-in cookie), so a key costs one handler, not a policy scheme and then the key's.
        var auth = services.AddAuthentication(ApiKeyHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyHandler>(ApiKeyHandler.SchemeName, "API key, identity provider token or sign-in cookie", o => o.ForwardDefaultSelector = context =>
            {
                var header = context.Request.Headers.Authorization.ToString();
                // A JWT is three dot-separated parts; MedServe keys have no dots.
                if (jwtConfigured && header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) && header.Count(c => c == '.') == 2)
                {
                    return IdentityProviders.JwtScheme;
                }
                return header.Length > 0
                    || (!context.Request.Cookies.ContainsKey(SignIn.CookieName) && context.RequestServices.GetRequiredService<IOptions<SecurityOptions>>().Value.InsecureDev)
                    ? null
                    : CookieAuthenticationDefaults.AuthenticationScheme;
            })
            .AddCookie(o =>
            {
                o.Cookie.Name = SignIn.CookieName;
                o.Cookie.HttpOnly = true;
                // Lax, not Strict: the sign-in through an identity provider ends with a redirect chain that starts on
                // the provider's site, and a Strict cookie set there is not sent on its last hop (the person would land
                // signed out). Cross-site POSTs still carry no session; forms carry antiforgery tokens.
                o.Cookie.SameSite = SameSiteMode.Lax;
                o.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
                o.ExpireTimeSpan = TimeSpan.FromHours(8);
                o.SlidingExpiration = true;
                o.LoginPath = SignIn.Path;
                o.AccessDeniedPath = SignIn.DeniedPath;
                o.Events.OnValidatePrincipal = async context =>
                {
                    // A revoked or expired key ends its sessions at their next request.
                    var validator = context.HttpContext.RequestServices.GetRequiredService<KeyValidator>();
                    if (context.Principal is null || (!context.Principal.KeyIdOf().StartsWith("idp:", StringComparison.Ordinal) && !await validator.StillValidAsync(context.Principal.KeyIdOf())))
                    {
                        context.RejectPrincipal();
                        await context.HttpContext.SignOutAsync(CookieAuthenticationDefaults.AuthenticationScheme);
                    }
                };
                // API calls answer 401/403 in words instead of redirecting to the sign-in page.
                o.Events.OnRedirectToLogin = context => ApiOr(context, StatusCodes.Status401Unauthorized, "sign in, or send an API key: Authorization: Bearer <key>");
                o.Events.OnRedirectToAccessDenied = context => ApiOr(context, StatusCodes.Status403Forbidden, "your role may not do this");
            });
        var (_, oidc) = auth.AddIdentityProviders(configuration);
        services.Configure<SecurityOptions>(o => o.OidcConfigured = oidc);
        // The framework registers its authorization services as transient, so every request built a policy evaluator,
        // an authorization service, a handler provider and its handlers anew; all are stateless over singletons (options,
        // loggers; MedServe's one requirement is its own handler), so one of each serves every request. Added first: AddAuthorization
        // only adds what is missing.
        services.TryAddSingleton<IAuthorizationService, DefaultAuthorizationService>();
        services.TryAddSingleton<IAuthorizationPolicyProvider, DefaultAuthorizationPolicyProvider>();
        services.TryAddSingleton<IAuthorizationHandlerProvider, DefaultAuthorizationHandlerProvider>();
        services.TryAddSingleton<IAuthorizationEvaluator, DefaultAuthorizationEvaluator>();
        services.TryAddSingleton<IAuthorizationHandlerContextFactory, DefaultAuthorizationHandlerContextFactory>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAuthorizationHandler, PassThroughAuthorizationHandler>());
        services.TryAddSingleton<IPolicyEvaluator, PolicyEvaluator>();
        services.AddAuthorization(o =>
        {
            foreach (var permission in Permissions.All)
            {
                o.AddPolicy(permission, p => p.AddRequirements(new PermissionRequirement(permission)));
            }
            // Deploying is a model manager's, re-scaling an operator's: the same endpoint takes either.
            o.AddPolicy(DeployOrScale, p => p.AddRequirements(new PermissionRequirement(Permissions.ManageModels, Permissions.Operate)));
            // Everything not marked otherwise needs a signed-in user or a key.
            o.FallbackPolicy = new Microsoft.AspNetCore.Authorization.AuthorizationPolicyBuilder().RequireAuthenticatedUser().Build();
        });
        services.AddCascadingAuthenticationState();
        return services;
    }

    /// <summary>Policy of <c>PUT /api/deployments/...</c>.</summary>
    public const string DeployOrScale = "deploy-or-scale";

    private static Task ApiOr(RedirectContext<CookieAuthenticationOptions> context, int status, string error)
    {
        var path = context.Request.Path;
        if (path.StartsWithSegments("/api") || path.StartsWithSegments("/v2") || path.StartsWithSegments("/fhir") || path.StartsWithSegments("/dicomweb") || path.StartsWithSegments("/openapi") || path.StartsWithSegments("/metrics") || path.StartsWithSegments("/orleans/api"))
        {
            context.Response.StatusCode = status;
            return context.Response.WriteAsJsonAsync(new { error });
        }
        context.Response.Redirect(context.RedirectUri);
        return Task.CompletedTask;
    }
}

/// <summary>
/// An authenticated user holding one of these permissions (claims <see cref="MedServeClaims.Permission"/>), as one
/// requirement that is its own handler, where the framework's pair (authenticated user, then a claim with a value in a
/// list) evaluated two requirements and walked every claim through LINQ on every request.
/// </summary>
public sealed class PermissionRequirement(params string[] anyOf) : AuthorizationHandler<PermissionRequirement>, IAuthorizationRequirement
{
    public IReadOnlyList<string> AnyOf { get; } = anyOf;

    protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, PermissionRequirement requirement)
    {
        var user = context.User;
        if (user.Identities.Any(i => i.IsAuthenticated) && requirement.AnyOf.Any(user.Has))
        {
            context.Succeed(requirement);
        }
        return Task.CompletedTask;
    }

    public override string ToString() => $"{nameof(PermissionRequirement)}: {string.Join(" or ", AnyOf)}";
}

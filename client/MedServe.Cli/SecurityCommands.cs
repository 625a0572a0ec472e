using System.CommandLine;
using System.Globalization;
using MedServe.Client;

namespace MedServe.Cli;

/// <summary>
/// The caller's key, checked by every command, and <c>medserve keys create|list|revoke</c> and <c>medserve audit
/// verify</c>: admin work over the grain client. The caller names a stored key (<c>--key</c> or <c>MEDSERVE_KEY</c>),
/// checked against the cluster's key store before anything is done, with the permission the HTTP API asks for the
/// same action. (The grain client itself is not authenticated: gateway ports belong on a trusted network; see the
/// README's security section.)
/// </summary>
public sealed partial class MedServeCli
{
    private readonly Option<string> _key = new("--key")
    {
        Description = "Your API key, a stored one (default: the MEDSERVE_KEY environment variable); every command checks its role as the HTTP API does.",
        Recursive = true,
        HelpName = "msk_...",
    };

    /// <summary>The key this run presents (<c>--key</c>, else <c>MEDSERVE_KEY</c>); a usage error, before connecting, when there is none.</summary>
    private string PresentedKey(ParseResult parse)
    {
        var key = parse.GetValue(_key) ?? Environment.GetEnvironmentVariable("MEDSERVE_KEY");
        return string.IsNullOrWhiteSpace(key)
            ? throw MedServeException.Invalid("this command needs your API key: --key msk_... or MEDSERVE_KEY", "--key")
            : key.Trim();
    }

    /// <summary>
    /// The caller's key record, when the key is a stored, usable one whose role grants one of
    /// <paramref name="permissions"/>; otherwise a clear refusal (exit 6). Every command goes through it (see
    /// <see cref="Handler"/>), asking what the HTTP API asks for the same action.
    /// </summary>
    private static async Task<ApiKeyInfo> RequireKeyAsync(string key, MedServeClient client, params string[] permissions)
    {
        var check = ApiKeys.IdOf(key) is { } id ? await client.Grains.GetGrain<IKeyStoreGrain>(0).FindAsync(id) : null;
        if (check is null || check.Sha256 != ApiKeys.Hash(key))
        {
            throw MedServeException.Forbidden("the key is not known to this cluster (the CLI needs a stored key: the first admin key the node printed, or one from 'medserve keys create')");
        }
        if (check.Info.Refusal(DateTimeOffset.UtcNow) is { } refused)
        {
            throw MedServeException.Forbidden(refused);
        }
        var granted = Roles.PermissionsOf(check.Info.Role);
        if (!permissions.Any(granted.Contains))
        {
            throw MedServeException.Forbidden($"a {check.Info.Role} key may not do this (it needs the {string.Join(" or ", permissions)} permission)");
        }
        return check.Info;
    }

    /// <summary>Whether <paramref name="me"/> may see a job: its submitter and admins (as the HTTP API's MayRead).</summary>
    private static bool MayRead(ApiKeyInfo me, JobInfo job) =>
        Roles.PermissionsOf(me.Role).Contains(Permissions.Admin) || job.Owner == me.Id;

    private Command KeyCommands()
    {
        var keys = new Command("keys", "API keys (admin): create, list, revoke.");
        var name = new Argument<string>("name") { Description = "Who or what uses the key." };
        var role = new Option<string>("--role") { Description = $"One of {string.Join(", ", Roles.All)}.", Required = true };
        var expires = new Option<DateTimeOffset?>("--expires") { Description = "When the key stops working (ISO 8601, e.g. 2027-06-30)." };
        var create = new Command("create", "Create a key; it is printed once and stored only as a hash.") { name, role, expires };
        create.SetAction(Handler([Permissions.Admin], async (p, c, me) =>
        {
            var created = await c.Grains.GetGrain<IKeyStoreGrain>(0).CreateAsync(p.GetRequiredValue(name), p.GetRequiredValue(role), p.GetValue(expires), me.Id);
            if (_jsonOutput)
            {
                WriteJson(new { id = created.Info.Id, key = created.Key, created.Info.Name, created.Info.Role, created.Info.ExpiresAt });
            }
            else
            {
                _out.WriteLine(created.Key);
                await _err.WriteLineAsync($"key {created.Info.Id} ({created.Info.Role}) created: copy it now, it is not shown again");
            }
            return ExitCodes.Ok;
        }));
        keys.Add(create);

        var list = new Command("list", "Keys: id, name, role, state (never a secret).");
        list.SetAction(Handler([Permissions.Admin], async (_, c, _) =>
        {
            var all = await c.Grains.GetGrain<IKeyStoreGrain>(0).ListAsync();
            if (_jsonOutput)
            {
                WriteJson(all);
                return ExitCodes.Ok;
            }
            foreach (var k in all)
            {
                _out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{k.Id}  {k.Role,-13}  {k.Refusal(DateTimeOffset.UtcNow) ?? "active",-20}  {k.Name}"));
            }
            return ExitCodes.Ok;
        }));
        keys.Add(list);

        var id = new Argument<string>("id") { Description = "The key's id (as listed)." };
        var revoke = new Command("revoke", "Revoke a key: it stops working within seconds.") { id };
        revoke.SetAction(Handler([Permissions.Admin], async (p, c, _) =>
        {
            var revoked = await c.Grains.GetGrain<IKeyStoreGrain>(0).RevokeAsync(p.GetRequiredValue(id));
            if (_jsonOutput)
            {
                WriteJson(revoked);
            }
            else
            {
                _out.WriteLine($"key {revoked.Id} revoked");
            }
            return ExitCodes.Ok;
        }));
        keys.Add(revoke);
        return keys;
    }

    private Command AuditCommands()
    {
        var audit = new Command("audit", "The audit trail (admin).");
        var verify = new Command("verify", "Walk the hash chain; exit 0 when it holds, 6 naming the first edited, removed or reordered record.");
        verify.SetAction(Handler([Permissions.Admin], async (_, c, _) =>
        {
            var log = c.Grains.GetGrain<IAuditLogGrain>(0);
            var (count, last) = await log.HeadAsync();
            var records = new List<AuditRecord>();
            for (long from = 1; from <= count; from += 4096)
            {
                records.AddRange(await log.ReadAsync(from, 4096));
            }
            var problem = AuditChain.Verify(records, count, last);
            if (_jsonOutput)
            {
                WriteJson(new { ok = problem is null, records = count, problem });
            }
            else if (problem is null)
            {
                _out.WriteLine($"the audit trail holds: {count} records, none edited, removed or reordered");
            }
            else
            {
                await _err.WriteLineAsync($"medserve: the audit trail is broken: {problem}");
            }
            return problem is null ? ExitCodes.Ok : ExitCodes.Tampered;
        }));
        audit.Add(verify);
        return audit;
    }
}

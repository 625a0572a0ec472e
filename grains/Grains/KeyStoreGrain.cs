namespace MedServe.Grains;

[GenerateSerializer, Alias("medserve.key-store-state")]
public sealed class KeyStoreState
{
    /// <summary>Keys by id, each with the SHA-256 of its secret (never the secret).</summary>
    [Id(0)] public Dictionary<string, ApiKeyCheck> Keys { get; set; } = new(StringComparer.Ordinal);
}

/// <summary>The cluster's API keys, stored hashed in grain storage (a file in the embedded node, Redis in a cluster).</summary>
internal sealed class KeyStoreGrain(
    [PersistentState("keys", StorageNames.State)] IPersistentState<KeyStoreState> state,
    TimeProvider clock) : Grain, IKeyStoreGrain
{
    /// <summary>Longest key name.</summary>
    public const int MaxNameLength = 100;

    public async Task<NewApiKey> CreateAsync(string name, string role, DateTimeOffset? expiresAt, string createdBy)
    {
        name = name?.Trim() ?? "";
        if (name.Length is 0 or > MaxNameLength || name.Any(char.IsControl))
        {
            throw MedServeException.Invalid($"a key's name is 1 to {MaxNameLength} printable characters", "name");
        }
        if (!Roles.IsValid(role))
        {
            throw MedServeException.Invalid($"role must be one of {string.Join(", ", Roles.All)}", "role");
        }
        var now = clock.GetUtcNow();
        if (expiresAt is { } expires && expires <= now)
        {
            throw MedServeException.Invalid("expires_at must be in the future", "expires_at");
        }
        var (id, key) = ApiKeys.NewKey();
        var info = new ApiKeyInfo { Id = id, Name = name, Role = role, CreatedAt = now, ExpiresAt = expiresAt, CreatedBy = createdBy };
        state.State.Keys[id] = new ApiKeyCheck(info, ApiKeys.Hash(key));
        await state.WriteOrReloadAsync(DeactivateOnIdle);
        return new NewApiKey(info, key);
    }

    public Task<ApiKeyInfo[]> ListAsync() =>
        Task.FromResult(state.State.Keys.Values.Select(k => k.Info).OrderBy(k => k.CreatedAt).ToArray());

    public async Task<ApiKeyInfo> RevokeAsync(string id)
    {
        if (!state.State.Keys.TryGetValue(id ?? "", out var check))
        {
            throw MedServeException.NotFound($"no key '{id}'");
        }
        if (check.Info.RevokedAt is null)
        {
            state.State.Keys[id!] = check with { Info = check.Info with { RevokedAt = clock.GetUtcNow() } };
            await state.WriteOrReloadAsync(DeactivateOnIdle);
        }
        return state.State.Keys[id!].Info;
    }

    public Task<ApiKeyCheck?> FindAsync(string id) => Task.FromResult(state.State.Keys.GetValueOrDefault(id ?? ""));

    public async Task<NewApiKey?> BootstrapAsync()
    {
        if (state.State.Keys.Count > 0)
        {
            return null;
        }
        return await CreateAsync("first admin key", Roles.Admin, null, "bootstrap");
    }
}
